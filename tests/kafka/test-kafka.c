/* SPDX-License-Identifier: MIT */
/*
 * tests/kafka/test-kafka.c: the Kafka backend against librdkafka's mock
 * cluster, beyond what the conformance suite checks: the record layout other
 * Kafka clients see, records written by other clients, a broker going down
 * and up during appends, records of the earlier layout (envelope in a
 * header), injected request errors, back-pressure, a broker
 * that is down at open, retention that dropped a read position, fatal
 * producer errors, and property pass-through.
 *
 * Every case starts its own mock cluster (kafka_mock_host_start) in its own
 * criterion worker, and talks to the backend through the SPI only.  Plain
 * librdkafka clients stand in for "another Kafka client".  Data per topic
 * stays far below the mock's 5 MiB partition cap, except in the case that
 * uses the cap on purpose.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <walimpls/walimpls.h>
#include <wal/wal.h>
#include <wal/wal-config.h>
#include <wal/wal-registry.h>
#include "impls/kafka/kafka-internal.h"
#include "utility/envelope.h"
#include "t-helpers.h"

/* ---- Fixture ---- */

struct kt {
        struct kafka_mock_host *host;
        rd_kafka_mock_cluster_t *mc;
        wal_config *cfg;
        const struct walimpls_builder *b;
        struct walimpls_opener *o;
};

static struct kt kt;

/* Start a mock cluster and fill kt.cfg; does not build. */
static void kt_setup_cluster(void)
{
        memset(&kt, 0, sizeof(kt));
        wal_error *e = NULL;
        cr_assert_eq(kafka_mock_host_start(1, &kt.host, &e), 0, "mock: %s", wal_error_message(e));
        kt.mc = kafka_mock_host_cluster(kt.host);
        cr_assert_eq(wal_config_new(&kt.cfg), 0);
        cr_assert_eq(wal_registry_find("kafka", &kt.b, &e), 0, "%s", wal_error_message(e));
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.bootstrap.servers",
                                    kafka_mock_host_bootstraps(kt.host), &e), 0,
                     "%s", wal_error_message(e));
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.fetch.wait.max.ms", "10", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.open_timeout", "10s", &e), 0);
}

static void kt_build(void)
{
        wal_error *e = NULL;
        int r = kt.b->build(kt.cfg, &kt.o, &e);
        cr_assert_eq(r, 0, "build: %d %s", r, wal_error_message(e));
}

static void kt_init(void)
{
        kt_setup_cluster();
        kt_build();
}

static void kt_fini(void)
{
        if (kt.o)
                kt.o->ops->close(kt.o);
        wal_config_free(kt.cfg);
        kafka_mock_host_stop(kt.host);
}

TestSuite(kafka, .init = kt_init, .fini = kt_fini, .timeout = 60);
TestSuite(kafka_open, .fini = kt_fini, .timeout = 60);
/* Cases that set properties before building: their .init is kt_setup_cluster. */
TestSuite(kafka_cfg, .fini = kt_fini, .timeout = 60);

static struct walimpls_wal *kt_open(const char *channel, enum wal_access access)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = 1, .access = access };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        int r = kt.o->ops->open(kt.o, &opts, &w, &e);
        cr_assert_eq(r, 0, "open %s: %d %s", channel, r, wal_error_message(e));
        return w;
}

static struct walimpls_scanner *kt_read(struct walimpls_wal *w, enum wal_deliver_policy pol,
                                        struct wal_msgid id)
{
        struct walimpls_read_opts ro = { .name = "t", .deliver = { .policy = pol, .id = id } };
        struct walimpls_scanner *s = NULL;
        wal_error *e = NULL;
        int r = w->ops->read(w, &ro, &s, &e);
        cr_assert_eq(r, 0, "read: %d %s", r, wal_error_message(e));
        return s;
}

/* ---- Completion tracking for many appends ---- */

struct acks {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        size_t n, done;
        int *status;
        struct wal_msgid *ids;
};

struct ack_arg {
        struct acks *a;
        size_t idx;
};

static void acks_init(struct acks *a, size_t n)
{
        pthread_mutex_init(&a->lock, NULL);
        pthread_cond_init(&a->cond, NULL);
        a->n = n;
        a->done = 0;
        a->status = calloc(n, sizeof(*a->status));
        a->ids = calloc(n, sizeof(*a->ids));
        cr_assert(a->status && a->ids);
        for (size_t i = 0; i < n; i++)
                a->status[i] = 1;   /* not completed */
}

static void acks_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)err;
        struct ack_arg *aa = arg;
        struct acks *a = aa->a;
        pthread_mutex_lock(&a->lock);
        if (a->status[aa->idx] != 1)
                a->status[aa->idx] = 1000;   /* completed twice: flagged */
        else
                a->status[aa->idx] = status;
        a->ids[aa->idx] = id;
        a->done++;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
        free(aa);
}

/* Wait until every append completed or @timeout_ms passed; @returns done. */
static size_t acks_wait(struct acks *a, size_t expect, int timeout_ms)
{
        uint64_t end = t_now_ms() + (uint64_t)timeout_ms;
        pthread_mutex_lock(&a->lock);
        while (a->done < expect && t_now_ms() < end) {
                pthread_mutex_unlock(&a->lock);
                t_sleep_ms(10);
                pthread_mutex_lock(&a->lock);
        }
        size_t d = a->done;
        pthread_mutex_unlock(&a->lock);
        return d;
}

static void acks_free(struct acks *a)
{
        free(a->status);
        free(a->ids);
}

static wal_msg *mk_msg(size_t idx)
{
        char payload[64], v[32];
        snprintf(payload, sizeof(payload), "payload-%zu", idx);
        snprintf(v, sizeof(v), "%zu", idx);
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, payload, strlen(payload), &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, "idx", v), 0);
        return m;
}

static void append_idx(struct walimpls_wal *w, struct acks *a, size_t idx)
{
        wal_msg *m = mk_msg(idx);
        struct ack_arg *aa = malloc(sizeof(*aa));
        cr_assert(aa);
        *aa = (struct ack_arg){ a, idx };
        int r = w->ops->append(w, m, acks_cb, aa);
        wal_msg_unref(m);
        cr_assert_eq(r, 0, "append %zu refused: %d", idx, r);
}

/* Read everything from the start; check each acknowledged index appears
 * exactly once, at the ID its completion reported, in ascending ID order. */
static void read_back_exactly_once(struct walimpls_wal *w, struct acks *a)
{
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        unsigned char *seen = calloc(a->n, 1);
        size_t acked = 0, got = 0;
        for (size_t i = 0; i < a->n; i++)
                acked += a->status[i] == 0;
        struct wal_msgid prev = WAL_MSGID_NONE;
        while (got < acked) {
                wal_msg *m = NULL;
                wal_error *e = NULL;
                int r = s->ops->next(s, 5000, &m, &e);
                cr_assert_eq(r, 0, "next after %zu of %zu: %d %s", got, acked, r,
                             wal_error_message(e));
                struct wal_msgid id = wal_msg_id(m);
                if (!wal_msgid_is_none(prev))
                        cr_assert_gt(wal_msgid_cmp(id, prev), 0, "IDs not ascending");
                prev = id;
                const char *v = wal_msg_prop(m, "idx");
                cr_assert_not_null(v);
                size_t idx = strtoul(v, NULL, 10);
                cr_assert_lt(idx, a->n);
                cr_assert_eq(seen[idx], 0, "index %zu read twice", idx);
                seen[idx] = 1;
                if (a->status[idx] == 0) {
                        cr_assert(wal_msgid_eq(a->ids[idx], id),
                                  "index %zu acked at %llu, read at %llu", idx,
                                  (unsigned long long)a->ids[idx].lo,
                                  (unsigned long long)id.lo);
                        got++;
                }
                wal_msg_unref(m);
        }
        /* Nothing more: no duplicate after the last acknowledged record. */
        wal_msg *m = NULL;
        int r = s->ops->next(s, 300, &m, NULL);
        cr_assert_eq(r, -ETIMEDOUT, "an extra record after every acked one (%d)", r);
        s->ops->close(s);
        free(seen);
}

/* ---- A plain librdkafka client ---- */

static rd_kafka_t *plain_client(rd_kafka_type_t type)
{
        char errstr[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", kafka_mock_host_bootstraps(kt.host), errstr,
                          sizeof(errstr));
        if (type == RD_KAFKA_CONSUMER) {
                rd_kafka_conf_set(c, "group.id", "plain", errstr, sizeof(errstr));
                rd_kafka_conf_set(c, "fetch.wait.max.ms", "10", errstr, sizeof(errstr));
        }
        rd_kafka_t *rk = rd_kafka_new(type, c, errstr, sizeof(errstr));
        cr_assert_not_null(rk, "%s", errstr);
        return rk;
}

/* A plain consumer assigned to partition 0 of @topic from its first offset. */
static rd_kafka_t *plain_consumer_from_start(const char *topic)
{
        rd_kafka_t *c = plain_client(RD_KAFKA_CONSUMER);
        rd_kafka_poll_set_consumer(c);
        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pl, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        cr_assert_eq(rd_kafka_assign(c, pl), 0);
        rd_kafka_topic_partition_list_destroy(pl);
        return c;
}

/* ---- Cases ---- */

Test(kafka, other_clients_see_plain_payloads_and_headers)
{
        char ch[64];
        t_unique_name("layout", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        struct acks a;
        acks_init(&a, 3);
        for (size_t i = 0; i < 3; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, 3, 20000), 3);

        char topic[128];
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        rd_kafka_t *c = plain_consumer_from_start(topic);
        size_t got = 0;
        uint64_t end = t_now_ms() + 10000;
        while (got < 3 && t_now_ms() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (!m)
                        continue;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                char want[64];
                snprintf(want, sizeof(want), "payload-%zu", got);
                cr_assert_eq(m->len, strlen(want));
                cr_assert_eq(memcmp(m->payload, want, m->len), 0, "value is not the payload");
                cr_assert_eq((uint64_t)m->offset, a.ids[got].lo, "offset is not the ID");
                rd_kafka_headers_t *h = NULL;
                cr_assert_eq(rd_kafka_message_headers(m, &h), 0);
                const void *v;
                size_t vs;
                cr_assert_eq(rd_kafka_header_get_last(h, "idx", &v, &vs), 0);
                cr_assert_eq(vs, 1);
                cr_assert_eq(((const char *)v)[0], (char)('0' + got));
                cr_assert_eq(rd_kafka_header_get_last(h, "_wal", &v, &vs),
                             RD_KAFKA_RESP_ERR__NOENT, "an envelope header besides the key");
                /* The envelope is the key, after a 4-byte magic. */
                cr_assert_gt(m->key_len, 4, "no envelope in the key");
                cr_assert_eq(memcmp(m->key, "\0wal", 4), 0, "the key lacks the magic");
                wal_msg *dm = NULL;
                wal_error *de = NULL;
                cr_assert_eq(walu_envelope_decode((const uint8_t *)m->key + 4, m->key_len - 4,
                                                  m->payload, m->len, &dm, &de), 0, "%s",
                             wal_error_message(de));
                cr_assert_str_eq(wal_msg_prop(dm, "idx"), want + strlen("payload-"));
                wal_msg_unref(dm);
                rd_kafka_message_destroy(m);
                got++;
        }
        cr_assert_eq(got, 3);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        w->ops->close(w);
        acks_free(&a);
}

static int64_t realtime_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A record's Kafka timestamp is its time tick's wall-clock milliseconds
 * (the tick is ms << 18 | logical); without a tick, the time of producing. */
Test(kafka, record_timestamp_is_the_time_ticks_milliseconds)
{
        char ch[64], topic[128];
        t_unique_name("stamp", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        const uint64_t ms = UINT64_C(1767225600123);   /* 2026-01-01, not now */
        struct acks a;
        acks_init(&a, 2);
        wal_msg *m = mk_msg(0);
        cr_assert_eq(wal_msg_set_time_tick(m, ms << 18 | 77), 0);
        struct ack_arg *aa = malloc(sizeof(*aa));
        cr_assert(aa);
        *aa = (struct ack_arg){ &a, 0 };
        cr_assert_eq(w->ops->append(w, m, acks_cb, aa), 0);
        wal_msg_unref(m);
        int64_t before = realtime_ms();
        append_idx(w, &a, 1);   /* no tick */
        cr_assert_eq(acks_wait(&a, 2, 20000), 2);
        cr_assert_eq(a.status[0], 0);
        cr_assert_eq(a.status[1], 0);

        rd_kafka_t *c = plain_consumer_from_start(topic);
        size_t got = 0;
        uint64_t end = t_now_ms() + 10000;
        while (got < 2 && t_now_ms() < end) {
                rd_kafka_message_t *r = rd_kafka_consumer_poll(c, 100);
                if (!r)
                        continue;
                if (!r->err) {
                        rd_kafka_timestamp_type_t tt;
                        int64_t ts = rd_kafka_message_timestamp(r, &tt);
                        cr_assert_eq(tt, RD_KAFKA_TIMESTAMP_CREATE_TIME);
                        if (got == 0)
                                cr_assert_eq(ts, (int64_t)ms, "timestamp %lld, tick's ms %llu",
                                             (long long)ts, (unsigned long long)ms);
                        else
                                cr_assert(ts >= before - 1000 && ts <= realtime_ms() + 1000,
                                          "no tick: timestamp %lld is not the time of producing",
                                          (long long)ts);
                        got++;
                }
                rd_kafka_message_destroy(r);
        }
        cr_assert_eq(got, 2);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, foreign_records_read_as_data_with_header_properties)
{
        char ch[64], topic[128];
        t_unique_name("foreign", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        rd_kafka_t *p = plain_client(RD_KAFKA_PRODUCER);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("raw bytes", 9),
                                       RD_KAFKA_V_HEADER("source", "kcat", 4),
                                       RD_KAFKA_V_HEADER("n", "7", 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("bare", 4),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        rd_kafka_destroy(p);

        /* The topic exists now, so a read-only open works. */
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RO);
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        wal_error *e = NULL;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        size_t len;
        const void *pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 9);
        cr_assert_eq(memcmp(pl, "raw bytes", 9), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert_str_eq(wal_msg_prop(m, "source"), "kcat");
        cr_assert_str_eq(wal_msg_prop(m, "n"), "7");
        cr_assert_eq(wal_msg_prop_count(m), 2);
        cr_assert(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 0)));
        wal_msg_unref(m);
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 4);
        cr_assert_eq(memcmp(pl, "bare", 4), 0);
        cr_assert_eq(wal_msg_prop_count(m), 0);
        cr_assert(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 1)));
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

/* Records of the earlier layout (the envelope in a "_wal" header) read back
 * as what they were; a foreign key without the magic is ignored. */
Test(kafka, envelope_header_records_and_foreign_keys_read_back)
{
        char ch[64], topic[128];
        t_unique_name("oldlayout", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        wal_msg *src = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_TXN_BEGIN, "old", 3, &src), 0);
        cr_assert_eq(wal_msg_set_prop(src, "k", "v"), 0);
        cr_assert_eq(wal_msg_set_time_tick(src, 12345), 0);
        cr_assert_eq(wal_msg_set_term(src, 7), 0);
        uint8_t env[256];
        int elen = walu_envelope_encode(src, env, sizeof(env));
        cr_assert_gt(elen, 0);
        wal_msg_unref(src);
        rd_kafka_t *p = plain_client(RD_KAFKA_PRODUCER);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("old", 3),
                                       RD_KAFKA_V_HEADER("_wal", env, elen),
                                       RD_KAFKA_V_HEADER("k", "v", 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("keyed", 5),
                                       RD_KAFKA_V_KEY("\0wa", 3),
                                       RD_KAFKA_V_HEADER("h", "1", 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        rd_kafka_destroy(p);

        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RO);
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        wal_error *e = NULL;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        size_t len;
        const void *pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 3);
        cr_assert_eq(memcmp(pl, "old", 3), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_TXN_BEGIN);
        cr_assert_eq(wal_msg_time_tick(m), 12345);
        cr_assert_eq(wal_msg_term(m), 7);
        cr_assert_str_eq(wal_msg_prop(m, "k"), "v");
        cr_assert_eq(wal_msg_prop_count(m), 1);
        wal_msg_unref(m);
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 5);
        cr_assert_eq(memcmp(pl, "keyed", 5), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert_str_eq(wal_msg_prop(m, "h"), "1");
        cr_assert_eq(wal_msg_prop_count(m), 1);
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

/* A plain message (no property, vchannel or transaction field) is written
 * with the compact key (impls/kafka/kafka-key.c) and other clients still see
 * its plain payload; records whose keys were written as bytes, one in the
 * full layout (what every earlier libwal wrote for such a message) and one
 * in the compact layout under its first prefix "\0wk" (what builds of
 * 2026-11-22 wrote), read back as what they were, beside it. */
Test(kafka, compact_and_full_layout_keys_read_back)
{
        char ch[64], topic[128];
        t_unique_name("keys", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        const uint64_t tick = ((uint64_t)1767225600000 << 18) | 77;
        /* The full layout: "\0wal", version 1, type 1, tick 12345, term 7,
         * has_lc, lc lo 5. */
        static const uint8_t full[] = { 0, 'w', 'a', 'l', 0x08, 0x01, 0x10, 0x01, 0x28, 0xb9,
                                        0x60, 0x30, 0x07, 0x38, 0x01, 0x48, 0x05 };
        /* The compact layout's first prefix: "\0wk", head (time tick, term 9,
         * no ID, type 4). */
        uint8_t compact[4 + 8 + 1] = { 0, 'w', 'k', 0x04 | 0x08 | 0x10 };
        for (unsigned i = 0; i < 8; i++)
                compact[4 + i] = (uint8_t)(tick >> (8 * i));
        compact[12] = 9;
        rd_kafka_t *p = plain_client(RD_KAFKA_PRODUCER);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("full", 4),
                                       RD_KAFKA_V_KEY(full, sizeof(full)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("compact", 7),
                                       RD_KAFKA_V_KEY(compact, sizeof(compact)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        rd_kafka_destroy(p);

        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        wal_msg *src = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "ours", 4, &src), 0);
        cr_assert_eq(wal_msg_set_time_tick(src, tick), 0);
        cr_assert_eq(wal_msg_set_term(src, 3), 0);
        cr_assert_eq(wal_msg_set_last_confirmed(src, WAL_MSGID(0, 1)), 0);
        struct acks a;
        acks_init(&a, 1);
        struct ack_arg *aa = malloc(sizeof(*aa));
        cr_assert(aa);
        *aa = (struct ack_arg){ &a, 0 };
        cr_assert_eq(w->ops->append(w, src, acks_cb, aa), 0);
        wal_msg_unref(src);
        cr_assert_eq(acks_wait(&a, 1, 20000), 1);
        cr_assert_eq(a.status[0], 0);
        cr_assert_eq(a.ids[0].lo, 2);

        /* Another client sees the payload, no header, and the compact key. */
        rd_kafka_t *c = plain_consumer_from_start(topic);
        size_t seen = 0;
        uint64_t end = t_now_ms() + 10000;
        while (seen < 3 && t_now_ms() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (!m)
                        continue;
                if (!m->err && m->offset == 2) {
                        cr_assert_eq(m->len, 4);
                        cr_assert_eq(memcmp(m->payload, "ours", 4), 0);
                        rd_kafka_headers_t *h = NULL;
                        cr_assert_neq(rd_kafka_message_headers(m, &h), 0, "headers sent");
                        /* prefix 5, head 1, tick 8, term 1, ID 1 */
                        cr_assert_eq(m->key_len, 16);
                        cr_assert_eq(memcmp(m->key, "\0wal\x07", 5), 0,
                                     "not the compact key");
                }
                if (!m->err)
                        seen++;
                rd_kafka_message_destroy(m);
        }
        cr_assert_eq(seen, 3);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);

        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        wal_error *e = NULL;
        size_t len;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        const void *pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 4);
        cr_assert_eq(memcmp(pl, "full", 4), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert_eq(wal_msg_time_tick(m), 12345);
        cr_assert_eq(wal_msg_term(m), 7);
        cr_assert(wal_msgid_eq(wal_msg_last_confirmed(m), WAL_MSGID(0, 5)));
        cr_assert_eq(wal_msg_prop_count(m), 0);
        wal_msg_unref(m);
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 7);
        cr_assert_eq(memcmp(pl, "compact", 7), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_TXN_COMMIT);
        cr_assert_eq(wal_msg_time_tick(m), tick);
        cr_assert_eq(wal_msg_term(m), 9);
        cr_assert(wal_msgid_is_none(wal_msg_last_confirmed(m)));
        wal_msg_unref(m);
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        pl = wal_msg_payload(m, &len);
        cr_assert_eq(len, 4);
        cr_assert_eq(memcmp(pl, "ours", 4), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert_eq(wal_msg_time_tick(m), tick);
        cr_assert_eq(wal_msg_term(m), 3);
        cr_assert(wal_msgid_eq(wal_msg_last_confirmed(m), WAL_MSGID(0, 1)));
        cr_assert(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 2)));
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, broker_down_and_up_during_appends, .timeout = 90)
{
        char ch[64];
        t_unique_name("downup", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 3000 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++) {
                if (i == 1000) {
                        /* Let some be acknowledged, then take the broker away. */
                        acks_wait(&a, 500, 10000);
                        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
                }
                if (i == 2000) {
                        t_sleep_ms(1500);
                        pthread_mutex_lock(&a.lock);
                        size_t during = a.done;
                        pthread_mutex_unlock(&a.lock);
                        /* Proof the outage was real: appends made while the
                         * broker was down are still waiting. */
                        cr_assert_lt(during, 2000, "all %zu appends completed while the "
                                     "broker was down", during);
                        cr_assert_eq(rd_kafka_mock_broker_set_up(kt.mc, 1), 0);
                }
                append_idx(w, &a, i);
                if (i % 100 == 0)
                        t_sleep_ms(10);
        }
        cr_assert_eq(acks_wait(&a, N, 60000), N, "not every append completed");
        size_t ok = 0;
        for (size_t i = 0; i < N; i++) {
                cr_assert_neq(a.status[i], 1000, "append %zu completed twice", i);
                ok += a.status[i] == 0;
        }
        /* librdkafka retries through the outage: nothing may fail. */
        cr_assert_eq(ok, N, "%zu of %d appends failed across a broker restart", N - ok, N);
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, injected_produce_errors_are_retried_without_duplicates, .timeout = 60)
{
        char ch[64];
        t_unique_name("inject", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        /* ApiKey 0 is Produce. */
        rd_kafka_mock_push_request_errors(kt.mc, 0, 5,
                                          RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                          RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                          RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                          RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                                          RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
        enum { N = 1000 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, N, 30000), N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka_cfg, queue_full_is_back_pressure_not_failure, .init = kt_setup_cluster, .timeout = 60)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.queue.buffering.max.messages", "16", &e), 0,
                     "%s", wal_error_message(e));
        kt_build();
        char ch[64];
        t_unique_name("bp", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 800 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++)
                append_idx(w, &a, i);   /* asserts every append returned 0 */
        cr_assert_eq(acks_wait(&a, N, 30000), N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        acks_free(&a);
}

/* The fence thread's debug line at a wal's close says how often appends
 * waited for room in the fence queue: kept here. */
static char fence_line[512];

static void fence_line_hook(void *arg, int level, const char *msg)
{
        (void)arg;
        (void)level;
        if (strstr(msg, "waits for queue room"))
                snprintf(fence_line, sizeof(fence_line), "%s", msg);
}

/*
 * With fencing (the default) appends queue for the fence thread, at most
 * kafkawal.fence_queue (here 2048) before append waits for room.  A term
 * register made slow (every request of the mock broker 100 ms late) lets
 * the appends outrun it well past that, so they wait for room (the wal's
 * debug line at close must count such waits), and the confirmed batches
 * are produced by the appending thread or by the fence thread: every
 * append must still be acknowledged exactly once, at IDs in append order.
 */
Test(kafka_cfg, fence_queue_full_is_back_pressure_and_keeps_order, .init = kt_setup_cluster,
     .timeout = 90)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fence_queue", "2048", &e), 0, "%s",
                     wal_error_message(e));
        kt_build();
        fence_line[0] = 0;
        wal_set_log_hook(fence_line_hook, NULL);
        char ch[64];
        t_unique_name("fq", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        cr_assert_eq(rd_kafka_mock_broker_set_rtt(kt.mc, 1, 100), 0);
        /* About 100 B each on the mock: under its 5 MiB cap. */
        enum { N = 36000 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++)
                append_idx(w, &a, i);   /* asserts every append returned 0 */
        cr_assert_eq(rd_kafka_mock_broker_set_rtt(kt.mc, 1, 0), 0);
        cr_assert_eq(acks_wait(&a, N, 60000), N, "not every append completed");
        for (size_t i = 0; i < N; i++) {
                cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
                if (i > 0)
                        cr_assert_gt(wal_msgid_cmp(a.ids[i], a.ids[i - 1]), 0,
                                     "append %zu got an ID below append %zu's", i, i - 1);
        }
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        wal_set_log_hook(NULL, NULL);
        const char *waits = strstr(fence_line, " waits for queue room");
        cr_assert_not_null(waits, "no fence debug line at close: \"%s\"", fence_line);
        const char *num = waits;
        while (num > fence_line && num[-1] >= '0' && num[-1] <= '9')
                num--;
        cr_assert_gt(strtoull(num, NULL, 10), 0, "appends never waited for room: %s",
                     fence_line);
        acks_free(&a);
}

/*
 * A completion may append to the same wal, even synchronously: no lock of
 * the backend is held while it runs.  Here the completion is a failure
 * reported by the appending thread itself: a record larger than
 * kafka.message.max.bytes (150 000 B against 100 000) is refused by
 * librdkafka when the appender produces the batch the term register
 * confirmed, and that record's completion appends another record and
 * waits (up to 5 s) for its acknowledgement.  Completions once ran under the lock that orders
 * producing (plock), which the fence thread needs to hand over the next
 * confirmed batch, so the nested append could never complete.  The
 * oversized record's completion runs on whichever thread produced it (the
 * appender or, when appends pause, the fence thread); the broker is made
 * 20 ms away and small records are appended every 0.1 ms so that appends
 * keep coming during every register read (the fence thread then leaves
 * producing to the appender), and the test retries until the appending
 * thread reported it.  Without the fix it fails after the 5 s wait.
 */
struct nested {
        struct walimpls_wal *w;
        pthread_t appender;
        atomic_int ran;        /* 0 not yet; 1 on the appender, 2 elsewhere */
        int status;            /* the oversized append's */
        char thread[16];       /* the name of the thread that reported it */
        struct acks inner;     /* the append made by its completion */
        int inner_r;           /* that append's return */
        size_t inner_done;     /* completed within 5 s (0 or 1) */
        uint64_t inner_ms;     /* how long the completion waited for it */
};

static void nested_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)id;
        (void)err;
        struct nested *n = arg;
        n->status = status;
        pthread_getname_np(pthread_self(), n->thread, sizeof(n->thread));
        if (!pthread_equal(pthread_self(), n->appender)) {
                atomic_store(&n->ran, 2);
                return;
        }
        uint64_t t0 = t_now_ms();
        wal_msg *m = mk_msg(0);
        struct ack_arg *aa = malloc(sizeof(*aa));
        cr_assert(aa);
        *aa = (struct ack_arg){ &n->inner, 0 };
        n->inner_r = n->w->ops->append(n->w, m, acks_cb, aa);
        wal_msg_unref(m);
        if (n->inner_r < 0)
                free(aa);
        else
                n->inner_done = acks_wait(&n->inner, 1, 5000);
        n->inner_ms = t_now_ms() - t0;
        atomic_store(&n->ran, 1);
}

Test(kafka_cfg, completion_of_a_refused_record_may_append_synchronously,
     .init = kt_setup_cluster, .timeout = 120)
{
        wal_error *e = NULL;
        /* (message.max.bytes also caps a produce request: not too small) */
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.message.max.bytes", "100000", &e), 0, "%s",
                     wal_error_message(e));
        kt_build();
        char ch[64];
        t_unique_name("nested", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        cr_assert_eq(rd_kafka_mock_broker_set_rtt(kt.mc, 1, 20), 0);
        enum { BIG = 150000, ATTEMPTS = 20, SMALL = 20000 };
        char *big = malloc(BIG);
        cr_assert(big);
        memset(big, 'b', BIG);
        static struct nested ns[ATTEMPTS];
        struct acks a;
        acks_init(&a, (size_t)ATTEMPTS * SMALL);
        size_t nsmall = 0;
        int attempt, on_appender = -1;
        for (attempt = 0; attempt < ATTEMPTS && on_appender < 0; attempt++) {
                struct nested *n = &ns[attempt];
                memset(n, 0, sizeof(*n));
                n->w = w;
                n->appender = pthread_self();
                acks_init(&n->inner, 1);
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, big, BIG, &m), 0);
                cr_assert_eq(w->ops->append(w, m, nested_cb, n), 0);
                wal_msg_unref(m);
                /* Keep appending (a few per register read), so that the
                 * appender produces what is confirmed. */
                for (size_t k = 0; k < SMALL && !atomic_load(&n->ran); k++) {
                        append_idx(w, &a, nsmall++);
                        usleep(100);
                }
                while (!atomic_load(&n->ran))
                        t_sleep_ms(1);
                if (atomic_load(&n->ran) == 1)
                        on_appender = attempt;
        }
        cr_assert_geq(on_appender, 0, "in %d attempts the appender never reported the "
                      "refused record itself (first by %s, status %d; last by %s, status %d)",
                      ATTEMPTS, ns[0].thread, ns[0].status, ns[ATTEMPTS - 1].thread,
                      ns[ATTEMPTS - 1].status);
        struct nested *n = &ns[on_appender];
        cr_assert_lt(n->status, 0, "the oversized record was not refused");
        cr_assert_eq(n->inner_r, 0, "append from the completion refused: %d", n->inner_r);
        cr_assert_eq(n->inner_done, 1, "the append made by a completion did not complete "
                     "within 5 s (a lock held during completions?)");
        cr_assert_eq(n->inner.status[0], 0, "the append made by a completion: %d",
                     n->inner.status[0]);
        free(big);
        cr_assert_eq(acks_wait(&a, nsmall, 30000), nsmall, "not every append completed");
        for (size_t i = 0; i < nsmall; i++)
                cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
        cr_log_info("refused record reported by the appender at attempt %d, %zu small appends; "
                    "its completion waited %llu ms for its own append", on_appender, nsmall,
                    (unsigned long long)n->inner_ms);
        cr_assert_eq(rd_kafka_mock_broker_set_rtt(kt.mc, 1, 0), 0);
        w->ops->close(w);
        for (int i = 0; i < attempt; i++)
                acks_free(&ns[i].inner);
        acks_free(&a);
}

Test(kafka_open, broker_down_at_open_fails_within_timeout, .timeout = 30)
{
        kt_setup_cluster();
        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.open_timeout", "1500ms", &e), 0);
        uint64_t t0 = t_now_ms();
        int r = kt.b->build(kt.cfg, &kt.o, &e);
        uint64_t took = t_now_ms() - t0;
        cr_assert_eq(r, -ETIMEDOUT, "build with the broker down: %d %s", r,
                     wal_error_message(e));
        cr_assert_null(kt.o);
        cr_assert_lt(took, 4000, "took %llu ms with a 1500 ms timeout",
                     (unsigned long long)took);
        cr_assert_geq(took, 1000, "gave up after only %llu ms", (unsigned long long)took);
        cr_assert_not_null(strstr(wal_error_message(e), kafka_mock_host_bootstraps(kt.host)),
                           "message does not name the brokers: %s", wal_error_message(e));
        cr_assert(wal_error_is_retriable(e));
        wal_error_free(e);
}

Test(kafka_open, nothing_listening_fails_within_timeout, .timeout = 30)
{
        kt_setup_cluster();
        int port = t_free_port();
        cr_assert_gt(port, 0);
        char bs[64];
        snprintf(bs, sizeof(bs), "127.0.0.1:%d", port);
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.bootstrap.servers", bs, &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.open_timeout", "1s", &e), 0);
        uint64_t t0 = t_now_ms();
        int r = kt.b->build(kt.cfg, &kt.o, &e);
        uint64_t took = t_now_ms() - t0;
        cr_assert_eq(r, -ETIMEDOUT, "%d %s", r, wal_error_message(e));
        cr_assert_lt(took, 3500, "took %llu ms", (unsigned long long)took);
        cr_assert_not_null(strstr(wal_error_message(e), bs), "%s", wal_error_message(e));
        wal_error_free(e);
}

Test(kafka_open, missing_bootstrap_and_bad_passthrough_are_einval)
{
        kt_setup_cluster();
        wal_error *e = NULL;
        cr_assert_eq(wal_config_unset(kt.cfg, "kafka.bootstrap.servers"), 0);
        int r = kt.b->build(kt.cfg, &kt.o, &e);
        cr_assert_eq(r, -EINVAL);
        cr_assert_not_null(strstr(wal_error_message(e), "kafka.bootstrap.servers"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.bootstrap.servers",
                                    kafka_mock_host_bootstraps(kt.host), &e), 0);
        /* Any kafka.* key is accepted by the config and judged by librdkafka. */
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.no.such.property", "1", &e), 0,
                     "%s", wal_error_message(e));
        r = kt.b->build(kt.cfg, &kt.o, &e);
        cr_assert_eq(r, -EINVAL);
        cr_assert_not_null(strstr(wal_error_message(e), "kafka.no.such.property"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        cr_assert_eq(wal_config_unset(kt.cfg, "kafka.no.such.property"), 0);
        /* A transactional producer would break the shared idempotent one. */
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.transactional.id", "x", &e), 0);
        r = kt.b->build(kt.cfg, &kt.o, &e);
        cr_assert_eq(r, -EINVAL);
        cr_assert_not_null(strstr(wal_error_message(e), "kafka.transactional.id"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
}

Test(kafka, position_dropped_by_retention_is_erange, .timeout = 60)
{
        char ch[64];
        t_unique_name("retention", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        /* 70 x 100 KiB: past the mock's 5 MiB partition cap, so the oldest
         * records are dropped and the low watermark moves up. */
        enum { N = 70, SZ = 100 * 1024 };
        char *big = malloc(SZ);
        memset(big, 'x', SZ);
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++) {
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, big, SZ, &m), 0);
                struct ack_arg *aa = malloc(sizeof(*aa));
                *aa = (struct ack_arg){ &a, i };
                cr_assert_eq(w->ops->append(w, m, acks_cb, aa), 0);
                wal_msg_unref(m);
                /* One record per message set, so the cap counts them. */
                acks_wait(&a, i + 1, 10000);
        }
        cr_assert_eq(acks_wait(&a, N, 10000), N);
        free(big);

        struct walimpls_info info;
        wal_error *e = NULL;
        cr_assert_eq(w->ops->info(w, &info, &e), 0, "%s", wal_error_message(e));
        cr_assert_gt(info.first_id.lo, 0, "the mock kept everything: the test proves nothing");

        struct walimpls_read_opts ro = { .name = "old",
                                         .deliver = { WAL_DELIVER_START_FROM, WAL_MSGID(0, 0) } };
        struct walimpls_scanner *s = NULL;
        int r = w->ops->read(w, &ro, &s, &e);
        cr_assert_eq(r, -ERANGE, "reading from a dropped offset: %d", r);
        cr_assert_not_null(strstr(wal_error_message(e), "no longer retained"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
        e = NULL;

        /* ALL starts at what is retained. */
        s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        cr_assert(wal_msgid_eq(wal_msg_id(m), info.first_id), "ALL began at %llu, not %llu",
                  (unsigned long long)wal_msg_id(m).lo, (unsigned long long)info.first_id.lo);
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, start_beyond_the_end_waits_for_that_offset)
{
        char ch[64];
        t_unique_name("beyond", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        struct acks a;
        acks_init(&a, 6);
        append_idx(w, &a, 0);
        cr_assert_eq(acks_wait(&a, 1, 10000), 1);
        /* Offset 3 does not exist yet: the scanner must start there, not at 1. */
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_START_FROM, WAL_MSGID(0, 3));
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 200, &m, NULL), -ETIMEDOUT);
        for (size_t i = 1; i < 6; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, 6, 10000), 6);
        wal_error *e = NULL;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        cr_assert(wal_msgid_eq(wal_msg_id(m), WAL_MSGID(0, 3)), "got %llu",
                  (unsigned long long)wal_msg_id(m).lo);
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, fatal_producer_error_makes_the_opener_unavailable, .timeout = 60)
{
        char ch[64];
        t_unique_name("fatal", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 40 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < 10; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, 10, 10000), 10);
        /* The broker says a sequence was lost: librdkafka cannot keep its
         * idempotence guarantee and fails the producer fatally. */
        rd_kafka_mock_push_request_errors(kt.mc, 0, 1,
                                          RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
        append_idx(w, &a, 10);
        cr_assert_eq(acks_wait(&a, 11, 10000), 11);
        cr_assert_eq(a.status[10], -EIO, "the append hit by the fatal error: %d", a.status[10]);
        /* From now on the opener refuses writes, with the reason. */
        wal_msg *m = mk_msg(11);
        struct ack_arg *aa = malloc(sizeof(*aa));
        *aa = (struct ack_arg){ &a, 11 };
        int r = w->ops->append(w, m, acks_cb, aa);
        wal_msg_unref(m);
        cr_assert_eq(r, -EIO, "append after a fatal error: %d", r);
        free(aa);
        struct walimpls_open_opts opts = { .channel = ch, .term = 2, .access = WAL_ACCESS_RW };
        struct walimpls_wal *w2 = NULL;
        wal_error *e = NULL;
        r = kt.o->ops->open(kt.o, &opts, &w2, &e);
        cr_assert_eq(r, -EIO);
        cr_assert(wal_error_is_fatal(e));
        cr_assert_not_null(strstr(wal_error_message(e), "unavailable"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
        /* What was acknowledged before stays readable. */
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        acks_free(&a);
}

/* Read every record of @topic with a plain consumer; @returns how many, and
 * whether one carried the payload @needle. */
static size_t plain_read_all(const char *topic, size_t expect, const char *needle, bool *found)
{
        rd_kafka_t *c = plain_consumer_from_start(topic);
        size_t got = 0;
        *found = false;
        /* Read until @expect records arrived, then 300 ms more for extras. */
        uint64_t end = t_now_ms() + 10000;
        while (t_now_ms() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
                if (got >= expect && end > t_now_ms() + 300)
                        end = t_now_ms() + 300;
                if (!m)
                        continue;
                if (!m->err) {
                        got++;
                        if (m->len == strlen(needle) && memcmp(m->payload, needle, m->len) == 0)
                                *found = true;
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        return got;
}

static struct walimpls_wal *kt_open_term(const char *channel, int64_t term, int *ret_r)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = term,
                                           .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        *ret_r = kt.o->ops->open(kt.o, &opts, &w, &e);
        if (*ret_r == -ESTALE)
                cr_assert_not_null(strstr(wal_error_message(e), "owned by term"), "%s",
                                   wal_error_message(e));
        wal_error_free(e);
        return w;
}

static int append_text_sync(struct walimpls_wal *w, const char *text, struct wal_msgid *id)
{
        struct acks a;
        acks_init(&a, 1);
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, text, strlen(text), &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, "idx", "0"), 0);
        struct ack_arg *aa = malloc(sizeof(*aa));
        *aa = (struct ack_arg){ &a, 0 };
        int r = w->ops->append(w, m, acks_cb, aa);
        wal_msg_unref(m);
        if (r < 0) {
                free(aa);
        } else {
                cr_assert_eq(acks_wait(&a, 1, 10000), 1);
                r = a.status[0];
                if (id)
                        *id = a.ids[0];
        }
        acks_free(&a);
        return r;
}

Test(kafka, fenced_appends_never_reach_the_topic)
{
        char ch[64], topic[128];
        t_unique_name("fence", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        int r;
        struct walimpls_wal *w5 = kt_open_term(ch, 5, &r);
        cr_assert_eq(r, 0);
        cr_assert_eq(append_text_sync(w5, "term5-a", NULL), 0);
        struct walimpls_wal *w6 = kt_open_term(ch, 6, &r);
        cr_assert_eq(r, 0);
        /* Several fenced appends, queued together: all refused. */
        for (int i = 0; i < 3; i++)
                cr_assert_eq(append_text_sync(w5, "term5-late", NULL), -ESTALE);
        cr_assert_eq(append_text_sync(w6, "term6-a", NULL), 0);
        bool found;
        size_t n = plain_read_all(topic, 2, "term5-late", &found);
        cr_assert_eq(n, 2, "the topic holds %zu records, want 2", n);
        cr_assert(!found, "a fenced append reached the topic");

        /* The register is an ordinary committed offset other tools can read. */
        char errstr[256], group[160];
        snprintf(group, sizeof(group), "libwal-term.%s", topic);
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", kafka_mock_host_bootstraps(kt.host), errstr,
                          sizeof(errstr));
        rd_kafka_conf_set(c, "group.id", group, errstr, sizeof(errstr));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
        cr_assert_not_null(rk);
        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pl, topic, 0);
        cr_assert_eq(rd_kafka_committed(rk, pl, 5000), 0);
        cr_assert_eq(pl->elems[0].offset, 6, "registered term %lld",
                     (long long)pl->elems[0].offset);
        rd_kafka_topic_partition_list_destroy(pl);
        rd_kafka_destroy(rk);

        struct walimpls_info info;
        cr_assert_eq(w6->ops->info(w6, &info, NULL), 0);
        cr_assert_eq(info.term, 6);
        /* A read-only open reads the register too (walctl info shows it). */
        struct walimpls_wal *ro = kt_open(ch, WAL_ACCESS_RO);
        wal_error *ie = NULL;
        cr_assert_eq(ro->ops->info(ro, &info, &ie), 0, "%s", wal_error_message(ie));
        cr_assert_eq(info.term, 6, "read-only info: term %lld", (long long)info.term);
        ro->ops->close(ro);
        w5->ops->close(w5);
        w6->ops->close(w6);

        /* Lower terms stay refused; the same term may reopen. */
        cr_assert_null(kt_open_term(ch, 4, &r));
        cr_assert_eq(r, -ESTALE);
        struct walimpls_wal *again = kt_open_term(ch, 6, &r);
        cr_assert_eq(r, 0);
        again->ops->close(again);
}

Test(kafka_cfg, fencing_off_writes_without_a_register, .init = kt_setup_cluster)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fencing", "false", &e), 0);
        kt_build();
        char ch[64];
        t_unique_name("nofence", ch, sizeof(ch));
        int r;
        struct walimpls_wal *w2 = kt_open_term(ch, 2, &r);
        cr_assert_eq(r, 0);
        struct walimpls_wal *w1 = kt_open_term(ch, 1, &r);
        cr_assert_eq(r, 0, "with fencing off a lower term opens: %d", r);
        struct wal_msgid a, b;
        cr_assert_eq(append_text_sync(w2, "two", &a), 0);
        cr_assert_eq(append_text_sync(w1, "one", &b), 0);
        cr_assert_lt(wal_msgid_cmp(a, b), 0);
        struct walimpls_info info;
        cr_assert_eq(w1->ops->info(w1, &info, NULL), 0);
        cr_assert_eq(info.term, -1, "no register, so no term: %lld", (long long)info.term);
        w1->ops->close(w1);
        w2->ops->close(w2);
}

Test(kafka_cfg, reader_overtaken_by_retention_gets_erange_not_a_gap, .init = kt_setup_cluster,
     .timeout = 60)
{
        /* A consumer that prefetches almost nothing, so it really falls behind. */
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.queued.max.messages.kbytes", "1", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.queued.min.messages", "1", &e), 0);
        kt_build();
        char ch[64];
        t_unique_name("overtaken", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 80, SZ = 100 * 1024 };
        char *big = calloc(1, SZ);
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < N; i++) {
                if (i == 5) {
                        cr_assert_eq(acks_wait(&a, 5, 10000), 5);
                        break;
                }
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, big, SZ, &m), 0);
                struct ack_arg *aa = malloc(sizeof(*aa));
                *aa = (struct ack_arg){ &a, i };
                cr_assert_eq(w->ops->append(w, m, acks_cb, aa), 0);
                wal_msg_unref(m);
        }
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_START_FROM, WAL_MSGID(0, 0));
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
        cr_assert_eq(wal_msg_id(m).lo, 0);
        wal_msg_unref(m);
        /* Now write past the mock's 5 MiB cap while the reader sits still. */
        for (size_t i = 5; i < N; i++) {
                wal_msg *mm = NULL;
                cr_assert_eq(wal_msg_new(WAL_MSG_DATA, big, SZ, &mm), 0);
                struct ack_arg *aa = malloc(sizeof(*aa));
                *aa = (struct ack_arg){ &a, i };
                cr_assert_eq(w->ops->append(w, mm, acks_cb, aa), 0);
                wal_msg_unref(mm);
                acks_wait(&a, i + 1, 10000);
        }
        free(big);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_gt(info.first_id.lo, 5, "the mock kept offset 5: the test proves nothing");
        /* Every delivery is the next offset, until the reader hits the hole. */
        uint64_t want = 1;
        int r;
        for (;;) {
                r = s->ops->next(s, 5000, &m, &e);
                if (r < 0)
                        break;
                cr_assert_eq(wal_msg_id(m).lo, want, "skipped from %llu to %llu",
                             (unsigned long long)want, (unsigned long long)wal_msg_id(m).lo);
                want++;
                wal_msg_unref(m);
        }
        cr_assert_eq(r, -ERANGE, "reader overtaken by retention: %d %s", r,
                     wal_error_message(e));
        cr_assert_lt(want, info.first_id.lo);
        wal_error_free(e);
        e = NULL;
        /* Sticky. */
        cr_assert_eq(s->ops->next(s, 0, &m, NULL), -ERANGE);
        s->ops->close(s);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka, tailing_scanner_survives_a_broker_restart, .timeout = 60)
{
        char ch[64];
        t_unique_name("tail", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 300 };
        struct acks a;
        acks_init(&a, N);
        struct walimpls_scanner *s = kt_read(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (size_t i = 0; i < 100; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, 100, 10000), 100);
        size_t next_idx = 0;
        wal_error *e = NULL;
        for (; next_idx < 50; next_idx++) {
                wal_msg *m = NULL;
                cr_assert_eq(s->ops->next(s, 5000, &m, &e), 0, "%s", wal_error_message(e));
                cr_assert_eq(strtoul(wal_msg_prop(m, "idx"), NULL, 10), next_idx);
                wal_msg_unref(m);
        }
        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
        for (size_t i = 100; i < 200; i++)
                append_idx(w, &a, i);
        t_sleep_ms(1000);
        cr_assert_eq(rd_kafka_mock_broker_set_up(kt.mc, 1), 0);
        for (size_t i = 200; i < N; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, N, 30000), N);
        /* The scanner resumes where it was: no gap, no repeat. */
        for (; next_idx < N; next_idx++) {
                wal_msg *m = NULL;
                int r = s->ops->next(s, 10000, &m, &e);
                cr_assert_eq(r, 0, "next at %zu: %d %s", next_idx, r, wal_error_message(e));
                cr_assert_eq(strtoul(wal_msg_prop(m, "idx"), NULL, 10), next_idx);
                cr_assert(wal_msgid_eq(wal_msg_id(m), a.ids[next_idx]));
                wal_msg_unref(m);
        }
        wal_msg *m = NULL;
        cr_assert_eq(s->ops->next(s, 200, &m, NULL), -ETIMEDOUT);
        s->ops->close(s);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka_open, librdkafka_private_mock_is_refused_with_a_reason)
{
        /* test.mock.num.brokers gives every handle its own cluster: the
         * producer, the term register and each scanner would not agree. */
        kt_setup_cluster();
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.test.mock.num.brokers", "1", &e), 0);
        int r = kt.b->build(kt.cfg, &kt.o, &e);
        cr_assert_eq(r, -EINVAL);
        cr_assert_not_null(strstr(wal_error_message(e), "private mock cluster"), "%s",
                           wal_error_message(e));
        wal_error_free(e);
}

Test(kafka, truncate_by_retention_keeps_data_and_checks_arguments)
{
        char ch[64];
        t_unique_name("trunc", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        struct acks a;
        acks_init(&a, 5);
        for (size_t i = 0; i < 5; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, 5, 10000), 5);
        wal_error *e = NULL;
        /* kafkawal.truncate=retention (default): allowed, nothing deleted now. */
        cr_assert_eq(w->ops->truncate(w, a.ids[2], &e), 0, "%s", wal_error_message(e));
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert(wal_msgid_eq(info.first_id, a.ids[0]));
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(1, 0), &e), -EINVAL);
        wal_error_free(e);
        e = NULL;
        struct walimpls_wal *ro = kt_open(ch, WAL_ACCESS_RO);
        cr_assert_eq(ro->ops->truncate(ro, a.ids[0], &e), -EROFS);
        wal_error_free(e);
        ro->ops->close(ro);
        w->ops->close(w);
        acks_free(&a);
}

/* ---- An older term's batch that lands after the newer term's anchor ---- */

struct late_ack {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        int status;
        struct wal_msgid id;
        char msg[512];
};

/* A late_ack not yet called back. */
#define LATE_ACK_INIT { .lock = PTHREAD_MUTEX_INITIALIZER, \
                        .cond = PTHREAD_COND_INITIALIZER, .status = 1 }

static void late_cb(void *ud, int status, const wal_msg *msg, const wal_error *err)
{
        struct late_ack *l = ud;
        pthread_mutex_lock(&l->lock);
        l->status = status;
        l->id = status == 0 && msg ? wal_msg_id(msg) : WAL_MSGID_NONE;
        snprintf(l->msg, sizeof(l->msg), "%s", err ? wal_error_message(err) : "");
        l->done = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

/* The offset of the record whose value is @needle in @topic, or -1. */
static int64_t plain_find(const char *topic, const char *needle)
{
        rd_kafka_t *c = plain_consumer_from_start(topic);
        int64_t lo = 0, hi = 0;
        cr_assert_eq(rd_kafka_query_watermark_offsets(c, topic, 0, &lo, &hi, 5000), 0);
        int64_t found = -1, next = lo;
        uint64_t end = t_now_ms() + 10000;
        while (next < hi && t_now_ms() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
                if (!m)
                        continue;
                if (!m->err) {
                        next = m->offset + 1;
                        if (m->len == strlen(needle) && memcmp(m->payload, needle, m->len) == 0)
                                found = m->offset;
                }
                rd_kafka_message_destroy(m);
        }
        cr_assert_geq(next, hi, "read only up to offset %lld of %lld", (long long)next,
                      (long long)hi);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        return found;
}

/*
 * The fence check of an older term passes, then a newer term registers and
 * writes its anchor, then the older term's batch lands: after the anchor,
 * with time ticks below it, so adaptor scanners drop it as a fenced
 * writer's straggler.  Such a record must not be acknowledged to the older
 * writer (it fails with -ESTALE).  The older writer's opener lingers 3 s
 * before sending a batch, which holds its produce between the check and the
 * broker; everything else goes through the public API.
 */
Test(kafka_cfg, older_terms_batch_landing_after_the_anchor_is_not_acknowledged,
     .init = kt_setup_cluster, .timeout = 60)
{
        wal_error *e = NULL;
        char ch[64], topic[128];
        t_unique_name("late", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        /* No periodic time tick: only the records this test writes. */
        cr_assert_eq(wal_config_set(kt.cfg, "timetick.interval", "60s", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.linger.ms", "3000", &e), 0);
        wal_opener *old = NULL, *neu = NULL;
        cr_assert_eq(wal_opener_new("kafka", kt.cfg, &old, &e), 0, "%s", wal_error_message(e));
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.linger.ms", "5", &e), 0);
        cr_assert_eq(wal_opener_new("kafka", kt.cfg, &neu, &e), 0, "%s", wal_error_message(e));

        wal *w1 = NULL, *w2 = NULL;
        cr_assert_eq(wal_open(old, ch, 1, WAL_ACCESS_RW, &w1, &e), 0, "%s",
                     wal_error_message(e));
        struct late_ack l = LATE_ACK_INIT;
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "late", 4, &m), 0);
        cr_assert_eq(wal_append(w1, m, late_cb, &l, &e), 0, "%s", wal_error_message(e));
        wal_msg_unref(m);
        /* Its fence check passes at once; its batch lingers 3 s. */
        t_sleep_ms(1000);
        cr_assert_eq(wal_open(neu, ch, 2, WAL_ACCESS_RW, &w2, &e), 0, "%s",
                     wal_error_message(e));

        pthread_mutex_lock(&l.lock);
        uint64_t end = t_now_ms() + 20000;
        while (!l.done && t_now_ms() < end) {
                pthread_mutex_unlock(&l.lock);
                t_sleep_ms(10);
                pthread_mutex_lock(&l.lock);
        }
        pthread_mutex_unlock(&l.lock);
        cr_assert(l.done, "the older term's append never completed");

        /* What an adaptor scanner of the new term delivers, from the start. */
        struct wal_deliver all = { .policy = WAL_DELIVER_ALL };
        wal_scanner *s = NULL;
        cr_assert_eq(wal_read(w2, &all, NULL, &s, &e), 0, "%s", wal_error_message(e));
        struct wal_msgid anchor2 = WAL_MSGID_NONE;
        bool scanner_saw_late = false;
        wal_msg *r = NULL;
        while (wal_scanner_next(s, 1000, &r, NULL) == 0) {
                size_t len = 0;
                const void *p = wal_msg_payload(r, &len);
                if (wal_msg_term(r) == 2 && wal_msgid_is_none(anchor2))
                        anchor2 = wal_msg_id(r);
                if (len == 4 && memcmp(p, "late", 4) == 0)
                        scanner_saw_late = true;
                wal_msg_unref(r);
        }
        wal_scanner_close(s);
        cr_assert(!wal_msgid_is_none(anchor2), "no record of term 2 read back");

        /* The interleaving really happened: the record is in the topic,
         * after term 2's anchor. */
        int64_t off = plain_find(topic, "late");
        cr_assert_geq(off, 0, "the older term's record never reached the topic (status %d: "
                      "%s): its fence check came too late, the test proves nothing",
                      l.status, l.msg);
        cr_assert_gt((uint64_t)off, anchor2.lo, "the record landed at offset %lld, before "
                     "term 2's anchor at %llu: the test proves nothing", (long long)off,
                     (unsigned long long)anchor2.lo);

        cr_assert_eq(l.status, -ESTALE, "the older term's record, at offset %lld after term 2's "
                     "anchor at %llu, completed with %d (%s); adaptor scanners %s it",
                     (long long)off, (unsigned long long)anchor2.lo, l.status, l.msg,
                     scanner_saw_late ? "deliver" : "never deliver");
        cr_assert(!scanner_saw_late, "a scanner delivered a record the writer was told failed");

        wal_close(w1);
        wal_close(w2);
        wal_opener_close(old);
        wal_opener_close(neu);
        pthread_mutex_destroy(&l.lock);
        pthread_cond_destroy(&l.cond);
}

/*
 * The fence thread's register reads overlap (kafka_fence_main): a read that
 * started before a record's delivery report must not acknowledge it, even
 * when its answer comes after that report.  The older writer's opener
 * lingers 3 s before sending a batch and has a fence queue of 2 (so one
 * queued append is half of it: a read starts beside the one in flight).
 * "late" is checked at once and sent at about 3 s.  At 0.5 s the broker is
 * told to hold its answer to the next offset fetch for 4 s, and "x" is
 * appended: its register read starts then, finds term 1 (the newer term
 * registers at 1 s), and answers at about 4.5 s.  At 3.6 s, after late's
 * delivery report, "y" is appended: its read starts beside x's, carrying
 * late, finds term 2, and is answered after x's.  late must fail with
 * -ESTALE.  A fence thread that let x's answer confirm late (x's read
 * started before late was delivered) would acknowledge a record that
 * landed after term 2's anchor.
 */
Test(kafka_cfg, a_register_read_started_before_a_delivery_report_does_not_acknowledge_it,
     .init = kt_setup_cluster, .timeout = 60)
{
        wal_error *e = NULL;
        char ch[64], topic[128];
        t_unique_name("overlap", ch, sizeof(ch));
        snprintf(topic, sizeof(topic), "wal-%s", ch);
        cr_assert_eq(wal_config_set(kt.cfg, "timetick.interval", "60s", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.linger.ms", "3000", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fence_queue", "2", &e), 0);
        wal_opener *old = NULL, *neu = NULL;
        cr_assert_eq(wal_opener_new("kafka", kt.cfg, &old, &e), 0, "%s", wal_error_message(e));
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.linger.ms", "5", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fence_queue", "65536", &e), 0);
        cr_assert_eq(wal_opener_new("kafka", kt.cfg, &neu, &e), 0, "%s", wal_error_message(e));

        wal *w1 = NULL, *w2 = NULL;
        cr_assert_eq(wal_open(old, ch, 1, WAL_ACCESS_RW, &w1, &e), 0, "%s",
                     wal_error_message(e));
        struct late_ack l = LATE_ACK_INIT, x = LATE_ACK_INIT, y = LATE_ACK_INIT;
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "late", 4, &m), 0);
        cr_assert_eq(wal_append(w1, m, late_cb, &l, &e), 0, "%s", wal_error_message(e));
        wal_msg_unref(m);
        t_sleep_ms(500);
        /* The next OffsetFetch (API key 9) is answered 4 s late. */
        cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(kt.mc, 1, 9, 1,
                                                                  RD_KAFKA_RESP_ERR_NO_ERROR,
                                                                  4000), 0);
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "x", 1, &m), 0);
        cr_assert_eq(wal_append(w1, m, late_cb, &x, &e), 0, "%s", wal_error_message(e));
        wal_msg_unref(m);
        t_sleep_ms(500);
        cr_assert_eq(wal_open(neu, ch, 2, WAL_ACCESS_RW, &w2, &e), 0, "%s",
                     wal_error_message(e));
        t_sleep_ms(2600);
        pthread_mutex_lock(&l.lock);
        bool late_pending = !l.done;
        pthread_mutex_unlock(&l.lock);
        cr_assert(late_pending, "late completed before x's read was answered: the test "
                  "proves nothing");
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "y", 1, &m), 0);
        cr_assert_eq(wal_append(w1, m, late_cb, &y, &e), 0, "%s", wal_error_message(e));
        wal_msg_unref(m);

        struct late_ack *acks[3] = { &l, &x, &y };
        for (int i = 0; i < 3; i++) {
                struct late_ack *a = acks[i];
                pthread_mutex_lock(&a->lock);
                uint64_t end = t_now_ms() + 20000;
                while (!a->done && t_now_ms() < end) {
                        pthread_mutex_unlock(&a->lock);
                        t_sleep_ms(10);
                        pthread_mutex_lock(&a->lock);
                }
                pthread_mutex_unlock(&a->lock);
                cr_assert(a->done, "append %d never completed", i);
        }

        /* What an adaptor scanner of the new term delivers, from the start. */
        struct wal_deliver all = { .policy = WAL_DELIVER_ALL };
        wal_scanner *s = NULL;
        cr_assert_eq(wal_read(w2, &all, NULL, &s, &e), 0, "%s", wal_error_message(e));
        struct wal_msgid anchor2 = WAL_MSGID_NONE;
        wal_msg *r = NULL;
        while (wal_scanner_next(s, 1000, &r, NULL) == 0) {
                if (wal_msg_term(r) == 2 && wal_msgid_is_none(anchor2))
                        anchor2 = wal_msg_id(r);
                wal_msg_unref(r);
        }
        wal_scanner_close(s);
        cr_assert(!wal_msgid_is_none(anchor2), "no record of term 2 read back");
        int64_t off = plain_find(topic, "late");
        cr_assert_gt(off, (int64_t)anchor2.lo, "late landed at offset %lld, not after term 2's "
                     "anchor at %llu: the test proves nothing", (long long)off,
                     (unsigned long long)anchor2.lo);
        cr_assert_eq(l.status, -ESTALE, "late, at offset %lld after term 2's anchor at %llu, "
                     "completed with %d (%s)", (long long)off,
                     (unsigned long long)anchor2.lo, l.status, l.msg);
        /* x was checked before term 2 registered, sent after: not
         * acknowledged either (or, never sent, failed). */
        cr_assert_neq(x.status, 0, "x completed with 0 at %llu", (unsigned long long)x.id.lo);
        cr_assert_neq(y.status, 0, "y completed with 0 at %llu", (unsigned long long)y.id.lo);

        wal_close(w1);
        wal_close(w2);
        wal_opener_close(old);
        wal_opener_close(neu);
        pthread_mutex_destroy(&l.lock);
        pthread_cond_destroy(&l.cond);
        pthread_mutex_destroy(&x.lock);
        pthread_cond_destroy(&x.cond);
        pthread_mutex_destroy(&y.lock);
        pthread_cond_destroy(&y.cond);
}

/*
 * Closing a wal while its appends cannot be delivered (the broker is down):
 * after kafkawal.close_timeout every one of them completes exactly once,
 * before close returns, with -ECANCELED (or 0 had it slipped through);
 * the delivery reports that come after the broker is back, or the opener's
 * purge, only give their slots back.  @fencing: the appends wait in the
 * fence queue (the register cannot be read) instead of librdkafka.
 */
static void close_with_broker_down(bool fencing)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.close_timeout", "300ms", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.open_timeout", "2s", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fencing", fencing ? "true" : "false",
                                    &e), 0);
        kt_build();
        char ch[64];
        t_unique_name("closedown", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 600, BEFORE = 100 };
        struct acks a;
        acks_init(&a, N);
        for (size_t i = 0; i < BEFORE; i++)
                append_idx(w, &a, i);
        cr_assert_eq(acks_wait(&a, BEFORE, 10000), BEFORE);
        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
        for (size_t i = BEFORE; i < N; i++)
                append_idx(w, &a, i);
        uint64_t t0 = t_now_ms();
        w->ops->close(w);
        uint64_t took = t_now_ms() - t0;
        pthread_mutex_lock(&a.lock);
        size_t done = a.done;
        pthread_mutex_unlock(&a.lock);
        cr_assert_eq(done, N, "close returned with %zu of %d appends not completed", N - done,
                     N);
        size_t cancelled = 0;
        for (size_t i = 0; i < N; i++) {
                cr_assert_neq(a.status[i], 1000, "append %zu completed twice", i);
                if (i < BEFORE)
                        cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
                else
                        cr_assert(a.status[i] == 0 || a.status[i] == -ECANCELED,
                                  "append %zu: %d", i, a.status[i]);
                cancelled += a.status[i] == -ECANCELED;
        }
        cr_assert_gt(cancelled, 0, "nothing was cancelled: the broker was not down");
        cr_assert_lt(took, 2000 + 2000 + 1000, "close took %llu ms",
                     (unsigned long long)took);
        /* The broker back: late reports of cancelled records must not
         * complete anything again; then the opener closes (purging). */
        cr_assert_eq(rd_kafka_mock_broker_set_up(kt.mc, 1), 0);
        t_sleep_ms(500);
        pthread_mutex_lock(&a.lock);
        done = a.done;
        pthread_mutex_unlock(&a.lock);
        cr_assert_eq(done, N, "%zu completions after close", done - N);
        /* The opener goes on: a new wal takes chunks while the closed
         * one's late reports retire its own (orphans), several chunks'
         * worth, each completed once. */
        t_unique_name("closedown2", ch, sizeof(ch));
        struct walimpls_wal *w2 = kt_open(ch, WAL_ACCESS_RW);
        struct acks b;
        acks_init(&b, N);
        for (size_t i = 0; i < N; i++)
                append_idx(w2, &b, i);
        cr_assert_eq(acks_wait(&b, N, 20000), N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(b.status[i], 0, "second wal, append %zu: %d", i, b.status[i]);
        w2->ops->close(w2);
        acks_free(&b);
        kt.o->ops->close(kt.o);
        kt.o = NULL;
        cr_assert_eq(a.done, N);
        acks_free(&a);
}

Test(kafka_cfg, close_with_the_broker_down_completes_each_append_once, .init = kt_setup_cluster,
     .timeout = 60)
{
        close_with_broker_down(false);
}

Test(kafka_cfg, close_with_the_broker_down_completes_each_fenced_append_once,
     .init = kt_setup_cluster, .timeout = 60)
{
        close_with_broker_down(true);
}

/*
 * Close while delivery reports arrive, fencing on: appends are queued,
 * confirmed, produced and reported while close cancels what is left, so a
 * report may win its slot just before close cancels the wal's slots and
 * reach the confirm list after close took it (504b29a makes close take it
 * again while it waits).  With a close timeout of 20 ms, rounds close
 * 0-6 ms after their appends, or once one completed, with the broker 5 or
 * 40 ms away.  Every close returns (a hang is the test's timeout), every
 * append completes exactly once (0 or -ECANCELED), and reading the channel back
 * finds each acknowledged record once, at its ID, and no record twice (a
 * cancelled record may or may not have been written).
 */
Test(kafka_cfg, close_while_reports_arrive_completes_each_fenced_append_once,
     .init = kt_setup_cluster, .timeout = 120)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fencing", "true", &e), 0);
        /* close gives up on what is in flight while reports still come */
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.close_timeout", "20ms", &e), 0, "%s",
                     wal_error_message(e));
        kt_build();
        enum { ROUNDS = 12, N = 3000 };
        size_t acked_all = 0, cancelled_all = 0;
        for (int round = 0; round < ROUNDS; round++) {
                char ch[64];
                t_unique_name("closerace", ch, sizeof(ch));
                struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
                /* odd rounds: the broker 40 ms away, close cancels what is
                 * in flight; even rounds: 5 ms, reports arrive while close
                 * waits (every fourth closes once one append completed) */
                cr_assert_eq(rd_kafka_mock_broker_set_rtt(kt.mc, 1, round % 2 ? 40 : 5), 0);
                struct acks a;
                acks_init(&a, N);
                for (size_t i = 0; i < N; i++)
                        append_idx(w, &a, i);
                if (round % 4 == 0)
                        cr_assert_geq(acks_wait(&a, 1, 10000), 1, "round %d: no completion",
                                      round);
                else
                        t_sleep_ms((uint64_t)(round % 7));
                w->ops->close(w);
                pthread_mutex_lock(&a.lock);
                size_t done = a.done;
                pthread_mutex_unlock(&a.lock);
                cr_assert_eq(done, N, "round %d: close returned with %zu appends not completed",
                             round, N - done);
                size_t acked = 0;
                for (size_t i = 0; i < N; i++) {
                        cr_assert_neq(a.status[i], 1000, "round %d: append %zu completed twice",
                                      round, i);
                        cr_assert(a.status[i] == 0 || a.status[i] == -ECANCELED,
                                  "round %d: append %zu: %d", round, i, a.status[i]);
                        acked += a.status[i] == 0;
                }
                acked_all += acked;
                cancelled_all += N - acked;
                /* read back: acknowledged ones once at their IDs, nothing twice */
                struct walimpls_wal *r = kt_open(ch, WAL_ACCESS_RO);
                struct walimpls_scanner *s = kt_read(r, WAL_DELIVER_ALL, WAL_MSGID_NONE);
                unsigned char *seen = calloc(N, 1);
                cr_assert(seen);
                size_t found = 0;
                for (;;) {
                        wal_msg *m = NULL;
                        int rr = s->ops->next(s, found < acked ? 5000 : 300, &m, NULL);
                        if (rr == -ETIMEDOUT)
                                break;
                        cr_assert_eq(rr, 0, "round %d: next: %d", round, rr);
                        const char *v = wal_msg_prop(m, "idx");
                        cr_assert_not_null(v);
                        size_t idx = strtoul(v, NULL, 10);
                        cr_assert_lt(idx, (size_t)N);
                        cr_assert_eq(seen[idx], 0, "round %d: index %zu read twice", round, idx);
                        seen[idx] = 1;
                        if (a.status[idx] == 0) {
                                cr_assert(wal_msgid_eq(a.ids[idx], wal_msg_id(m)),
                                          "round %d: index %zu acked at %llu, read at %llu",
                                          round, idx, (unsigned long long)a.ids[idx].lo,
                                          (unsigned long long)wal_msg_id(m).lo);
                                found++;
                        }
                        wal_msg_unref(m);
                }
                cr_assert_eq(found, acked, "round %d: %zu of %zu acknowledged records read",
                             round, found, acked);
                s->ops->close(s);
                r->ops->close(r);
                free(seen);
                acks_free(&a);
        }
        cr_log_info("close race: %zu acknowledged, %zu cancelled over %d rounds", acked_all,
                    cancelled_all, ROUNDS);
        cr_assert_gt(cancelled_all, 0, "close never caught an append in flight");
        cr_assert_gt(acked_all, 0, "no append was ever acknowledged before close");
}

/*
 * wal.flush sends what linger.ms still holds at once and returns once every
 * append made before it has completed.  linger.ms is 3 s here: a flush
 * that waited it out (or returned before the completions) fails.  Then,
 * with the broker down, a flush with a timeout gives up with -ETIMEDOUT,
 * and the appends still complete once it is back, each exactly once.
 */
static void flush_skips_linger(bool fencing)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafka.linger.ms", "3000", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fencing", fencing ? "true" : "false",
                                    &e), 0);
        kt_build();
        char ch[64];
        t_unique_name("flush", ch, sizeof(ch));
        struct walimpls_wal *w = kt_open(ch, WAL_ACCESS_RW);
        enum { N = 300, ROUND = 100 };
        struct acks a;
        acks_init(&a, N);
        for (size_t round = 0; round < 2; round++) {
                for (size_t i = round * ROUND; i < (round + 1) * ROUND; i++)
                        append_idx(w, &a, i);
                uint64_t t0 = t_now_ms();
                int r = walimpls_flush(w, 10000, &e);
                uint64_t took = t_now_ms() - t0;
                cr_assert_eq(r, 0, "flush: %d %s", r, wal_error_message(e));
                pthread_mutex_lock(&a.lock);
                size_t done = a.done;
                pthread_mutex_unlock(&a.lock);
                cr_assert_eq(done, (round + 1) * ROUND,
                             "flush returned with %zu appends not completed",
                             (round + 1) * ROUND - done);
                cr_assert_lt(took, 1500, "flush took %llu ms: it waited out linger.ms",
                             (unsigned long long)took);
        }
        /* Nothing in flight: at once. */
        cr_assert_eq(walimpls_flush(w, 0, &e), 0);

        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
        for (size_t i = 2 * ROUND; i < N; i++)
                append_idx(w, &a, i);
        uint64_t t0 = t_now_ms();
        int r = walimpls_flush(w, 200, &e);
        uint64_t took = t_now_ms() - t0;
        cr_assert_eq(r, -ETIMEDOUT, "flush with the broker down: %d", r);
        cr_assert_geq(took, 190);
        cr_assert_lt(took, 1500, "flush(200 ms) took %llu ms", (unsigned long long)took);
        wal_error_free(e);
        e = NULL;
        cr_assert_eq(rd_kafka_mock_broker_set_up(kt.mc, 1), 0);
        cr_assert_eq(walimpls_flush(w, 30000, &e), 0, "%s", wal_error_message(e));
        pthread_mutex_lock(&a.lock);
        size_t done = a.done;
        pthread_mutex_unlock(&a.lock);
        cr_assert_eq(done, N, "%zu not completed after the broker came back", N - done);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(a.status[i], 0, "append %zu: %d", i, a.status[i]);
        read_back_exactly_once(w, &a);
        w->ops->close(w);
        acks_free(&a);
}

Test(kafka_cfg, flush_skips_linger_and_waits_for_completions, .init = kt_setup_cluster,
     .timeout = 60)
{
        flush_skips_linger(false);
}

Test(kafka_cfg, flush_skips_linger_and_waits_for_fenced_completions, .init = kt_setup_cluster,
     .timeout = 60)
{
        flush_skips_linger(true);
}

/*
 * A blocking append through the adaptor flushes (wal.flush) inside the
 * wal's lifetime gate, and wal_close() waits for the gate to empty before
 * it closes the backend, which is what completes appends still in flight
 * (-ECANCELED after kafkawal.close_timeout).  With the broker down, a flush
 * without a time limit (append.timeout 0, the default) must therefore not
 * wait for those completions for ever: wal_close() would wait for it, up to
 * librdkafka's message.timeout.ms (5 minutes).  Here close must end the
 * blocked append and return within 10 s (close_timeout is 1 s).
 */
struct blocked_append {
        wal *w;
        atomic_int done;
        int r;
};

static void *append_wait_main(void *arg)
{
        struct blocked_append *b = arg;
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_DATA, "blocked", 7, &m) == 0) {
                b->r = wal_append_wait(b->w, m, NULL, NULL);
                wal_msg_unref(m);
        }
        atomic_store(&b->done, 1);
        return NULL;
}

static atomic_int close_returned;

static void *close_main(void *arg)
{
        wal_close(arg);
        atomic_store(&close_returned, 1);
        return NULL;
}

static void close_ends_blocked_append(bool fencing)
{
        wal_error *e = NULL;
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.close_timeout", "1s", &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "kafkawal.fencing", fencing ? "true" : "false",
                                    &e), 0);
        cr_assert_eq(wal_config_set(kt.cfg, "timetick.interval", "60s", &e), 0);
        wal_opener *o = NULL;
        cr_assert_eq(wal_opener_new("kafka", kt.cfg, &o, &e), 0, "%s", wal_error_message(e));
        char ch[64];
        t_unique_name("blocked", ch, sizeof(ch));
        struct blocked_append b = { 0 };
        cr_assert_eq(wal_open(o, ch, 1, WAL_ACCESS_RW, &b.w, &e), 0, "%s",
                     wal_error_message(e));
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "first", 5, &m), 0);
        cr_assert_eq(wal_append_wait(b.w, m, NULL, &e), 0, "%s", wal_error_message(e));
        wal_msg_unref(m);

        cr_assert_eq(rd_kafka_mock_broker_set_down(kt.mc, 1), 0);
        pthread_t ta, tc;
        pthread_create(&ta, NULL, append_wait_main, &b);
        t_sleep_ms(500);
        cr_assert(!atomic_load(&b.done), "the append returned %d with the broker down: the "
                  "test proves nothing", b.r);
        atomic_store(&close_returned, 0);
        uint64_t t0 = t_now_ms();
        pthread_create(&tc, NULL, close_main, b.w);
        while (!atomic_load(&close_returned) && t_now_ms() - t0 < 10000)
                t_sleep_ms(10);
        cr_assert(atomic_load(&close_returned), "wal_close() still waits 10 s after it was "
                  "called, behind a blocking append with the broker down");
        pthread_join(tc, NULL);
        while (!atomic_load(&b.done) && t_now_ms() - t0 < 12000)
                t_sleep_ms(10);
        cr_assert(atomic_load(&b.done), "the blocking append did not end with the close");
        pthread_join(ta, NULL);
        cr_assert(b.r == -ECANCELED || b.r == -ESHUTDOWN, "the blocked append: %d", b.r);
        cr_assert_eq(rd_kafka_mock_broker_set_up(kt.mc, 1), 0);
        wal_opener_close(o);
}

Test(kafka_cfg, close_ends_a_blocking_append_while_the_broker_is_down,
     .init = kt_setup_cluster, .timeout = 120)
{
        close_ends_blocked_append(false);
}

Test(kafka_cfg, close_ends_a_fenced_blocking_append_while_the_broker_is_down,
     .init = kt_setup_cluster, .timeout = 120)
{
        close_ends_blocked_append(true);
}
