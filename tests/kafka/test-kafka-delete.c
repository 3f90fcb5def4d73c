/* SPDX-License-Identifier: MIT */
/*
 * tests/kafka/test-kafka-delete.c: truncate with kafkawal.truncate=
 * delete_records against the mock cluster.
 *
 * The mock answers DeleteRecords with _UNSUPPORTED_FEATURE, which truncate
 * accepts ("deleted later or never"), so what this checks is that the
 * request path runs, reports success, deletes nothing and says so with a
 * warning through the log hook (the user asked for deletion).  It lives in its
 * own executable because librdkafka 2.0.2 leaks 176 bytes inside
 * DeleteRecords on that answer (reproduced with a plain librdkafka program
 * under ASan); meson runs it with an LSan suppression for librdkafka's own
 * allocations (lsan-librdkafka.supp) that no other suite gets.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <criterion/criterion.h>

#include <walimpls/walimpls.h>
#include <wal/wal-config.h>
#include <wal/wal-log.h>
#include <wal/wal-registry.h>
#include "impls/kafka/kafka-internal.h"
#include "t-helpers.h"

static void done_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)err;
        struct wal_msgid *ret = arg;
        *ret = status == 0 ? id : WAL_MSGID(0, UINT64_MAX - 1);
}

static atomic_int warned;

static void log_cb(void *arg, int level, const char *msg)
{
        (void)arg;
        if (level == WAL_LOG_WARNING && strstr(msg, "do not support DeleteRecords, so nothing "
                                                    "was deleted"))
                atomic_fetch_add(&warned, 1);
}

Test(kafka_delete, delete_records_on_a_broker_that_cannot, .timeout = 60)
{
        struct kafka_mock_host *h = NULL;
        wal_error *e = NULL;
        cr_assert_eq(kafka_mock_host_start(1, &h, &e), 0, "%s", wal_error_message(e));
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_eq(wal_config_set(cfg, "kafka.bootstrap.servers",
                                    kafka_mock_host_bootstraps(h), &e), 0);
        cr_assert_eq(wal_config_set(cfg, "kafkawal.truncate", "delete_records", &e), 0,
                     "%s", wal_error_message(e));
        const struct walimpls_builder *b = NULL;
        cr_assert_eq(wal_registry_find("kafka", &b, &e), 0);
        struct walimpls_opener *o = NULL;
        cr_assert_eq(b->build(cfg, &o, &e), 0, "%s", wal_error_message(e));
        char ch[64];
        t_unique_name("delete", ch, sizeof(ch));
        struct walimpls_open_opts opts = { .channel = ch, .term = 1, .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        cr_assert_eq(o->ops->open(o, &opts, &w, &e), 0, "%s", wal_error_message(e));
        struct wal_msgid ids[3];
        for (int i = 0; i < 3; i++) {
                ids[i] = WAL_MSGID_NONE;
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "x", 1, &m), 0);
                cr_assert_eq(w->ops->append(w, m, done_cb, &ids[i]), 0);
                wal_msg_unref(m);
                uint64_t end = t_now_ms() + 10000;
                while (wal_msgid_is_none(ids[i]) && t_now_ms() < end)
                        t_sleep_ms(5);
                cr_assert_eq(ids[i].hi, 0, "append %d failed", i);
        }
        wal_set_log_hook(log_cb, NULL);
        cr_assert_eq(w->ops->truncate(w, ids[1], &e), 0, "%s", wal_error_message(e));
        wal_set_log_hook(NULL, NULL);
        cr_expect_eq(atomic_load(&warned), 1, "one warning that nothing was deleted");
        /* Past the end is clamped, not an error. */
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(0, 1000), &e), 0, "%s",
                     wal_error_message(e));
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert(wal_msgid_eq(info.first_id, ids[0]),
                  "the mock deleted records: update this test (first %llu)",
                  (unsigned long long)info.first_id.lo);
        w->ops->close(w);
        o->ops->close(o);
        wal_config_free(cfg);
        kafka_mock_host_stop(h);
}
