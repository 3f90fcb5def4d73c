/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/test-memory.c: what the memory backend promises beyond
 * the common contract (impls/memory/memory.c): IDs WAL_MSGID(0, 1..) in call
 * order, a new opener starts empty, a read-write open at the same term takes
 * over, appends complete before append returns (memory.completion=inline,
 * the default), with memory.completion=thread cancelled appends leave holes
 * but never reorderings, truncation past the end clamps to the last message,
 * and every entry point refuses bad arguments with -EINVAL and a message
 * instead of crashing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conformance.h"

static const struct walimpls_builder *mb;
static struct walimpls_opener *mo;

static void mem_init(void)
{
        cr_assert_eq(wal_registry_find("memory", &mb, NULL), 0, "memory is not registered");
        cr_assert_eq(mb->caps & WALIMPLS_CAP_PERSISTENT, 0u);
        cr_assert_eq(mb->build(NULL, &mo, NULL), 0);
}

static void mem_fini(void)
{
        if (mo)
                mo->ops->close(mo);
        mo = NULL;
}

TestSuite(memory, .init = mem_init, .fini = mem_fini, .timeout = 30);

static struct walimpls_wal *mopen(const char *ch, int64_t term, enum wal_access a)
{
        struct walimpls_wal *w = NULL;
        int r = conf_open(mo, ch, term, a, &w, NULL);
        cr_assert_eq(r, 0, "open %s: %s", ch, strerror(-r));
        return w;
}

static struct wal_msgid mappend(struct walimpls_wal *w, long idx)
{
        wal_msg *m = conf_msg(idx, "m%ld", idx);
        struct wal_msgid id = WAL_MSGID_NONE;
        int r = conf_append_sync(w, m, &id);
        wal_msg_unref(m);
        cr_assert_eq(r, 0, "append %ld: %s", idx, strerror(-r));
        return id;
}

Test(memory, ids_are_dense_from_one)
{
        struct walimpls_wal *w = mopen("dense", 1, WAL_ACCESS_RW);
        for (uint64_t i = 1; i <= 5; i++) {
                struct wal_msgid id = mappend(w, (long)i);
                cr_assert(wal_msgid_eq(id, WAL_MSGID(0, i)), "ID %s, want 0-%llu", conf_id(id),
                          (unsigned long long)i);
        }
        cr_assert_str_eq(conf_id(WAL_MSGID(0, 3)), "3");
        w->ops->close(w);
        /* Reopening continues the sequence. */
        w = mopen("dense", 2, WAL_ACCESS_RW);
        cr_assert(wal_msgid_eq(mappend(w, 6), WAL_MSGID(0, 6)));
        w->ops->close(w);
}

Test(memory, new_opener_starts_empty)
{
        struct walimpls_wal *w = mopen("gone", 1, WAL_ACCESS_RW);
        mappend(w, 0);
        w->ops->close(w);
        struct walimpls_opener *o2 = NULL;
        cr_assert_eq(mb->build(NULL, &o2, NULL), 0);
        struct walimpls_wal *w2 = NULL;
        cr_assert_eq(conf_open(o2, "gone", 1, WAL_ACCESS_RO, &w2, NULL), -ENOENT);
        o2->ops->close(o2);
}

Test(memory, same_term_open_takes_over)
{
        struct walimpls_wal *w1 = mopen("takeover", 3, WAL_ACCESS_RW);
        mappend(w1, 0);
        struct walimpls_wal *w2 = mopen("takeover", 3, WAL_ACCESS_RW);
        wal_msg *m = conf_msg(1, "old writer");
        struct conf_done *d = conf_done_new();
        cr_assert_eq(w1->ops->append(w1, m, conf_done_cb, d), -ESTALE);
        conf_done_free(d);
        wal_msg_unref(m);
        wal_error *e = NULL;
        cr_assert_eq(w1->ops->truncate(w1, WAL_MSGID(0, 1), &e), -ESTALE);
        cr_assert_not_null(strstr(wal_error_message(e), "fenced"), "%s", wal_error_message(e));
        wal_error_free(e);
        mappend(w2, 2);
        struct walimpls_info info;
        cr_assert_eq(w2->ops->info(w2, &info, NULL), 0);
        cr_assert_eq(info.term, 3);
        cr_assert_eq(info.count, 2);
        w1->ops->close(w1);
        w2->ops->close(w2);
}

/* An opener with memory.completion=thread, replacing the suite's. */
static void use_completion_thread(void)
{
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_eq(wal_config_set(cfg, "memory.completion", "thread", NULL), 0);
        mo->ops->close(mo);
        mo = NULL;
        cr_assert_eq(mb->build(cfg, &mo, NULL), 0);
        wal_config_free(cfg);
}

static void done_record(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)err;
        struct wal_msgid *ret = arg;
        *ret = status == 0 ? id : WAL_MSGID(UINT64_MAX, (uint64_t)-status);
}

Test(memory, inline_completion_runs_before_append_returns)
{
        struct walimpls_wal *w = mopen("inline", 1, WAL_ACCESS_RW);
        for (uint64_t i = 1; i <= 3; i++) {
                struct wal_msgid got = WAL_MSGID_NONE;
                wal_msg *m = conf_msg((long)i, "i");
                cr_assert_eq(w->ops->append(w, m, done_record, &got), 0);
                wal_msg_unref(m);
                cr_assert(wal_msgid_eq(got, WAL_MSGID(0, i)), "append %llu completed as %s",
                          (unsigned long long)i, conf_id(got));
        }
        w->ops->close(w);
}

Test(memory, unknown_completion_mode_is_refused)
{
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_lt(wal_config_set(cfg, "memory.completion", "later", NULL), 0);
        wal_config_free(cfg);
}

Test(memory, cancelled_appends_leave_holes_not_reorderings, .timeout = 60)
{
        use_completion_thread();
        /* Repeat until a close actually cancels something (it usually does
         * at once: the completion thread cannot keep up with 20000 appends). */
        for (int attempt = 0; attempt < 20; attempt++) {
                char ch[64];
                conf_channel("holes", ch);
                struct walimpls_wal *w = mopen(ch, 1, WAL_ACCESS_RW);
                enum { N = 20000 };
                struct conf_done **d = calloc(N, sizeof(*d));
                for (int i = 0; i < N; i++) {
                        d[i] = conf_done_new();
                        wal_msg *m = conf_msg(i, "h");
                        cr_assert_eq(w->ops->append(w, m, conf_done_cb, d[i]), 0);
                        wal_msg_unref(m);
                }
                w->ops->close(w);
                int cancelled = 0, ok = 0;
                for (int i = 0; i < N; i++) {
                        if (d[i]->status == -ECANCELED) {
                                cancelled++;
                        } else {
                                cr_assert_eq(d[i]->status, 0, "append %d: %d", i, d[i]->status);
                                cr_assert_eq(cancelled, 0, "append %d succeeded after a "
                                             "cancelled one", i);
                                ok++;
                        }
                        conf_done_free(d[i]);
                }
                free(d);
                if (cancelled == 0)
                        continue;
                /* The next ID is above every ID ever handed out, cancelled too. */
                w = mopen(ch, 1, WAL_ACCESS_RW);
                struct wal_msgid id = mappend(w, N);
                cr_assert(wal_msgid_eq(id, WAL_MSGID(0, (uint64_t)N + 1)), "ID after holes: %s",
                          conf_id(id));
                struct walimpls_scanner *s = NULL;
                cr_assert_eq(conf_read(w, "h", WAL_DELIVER_ALL, WAL_MSGID_NONE, &s, NULL), 0);
                for (int i = 0; i <= ok; i++) {
                        wal_msg *m = NULL;
                        cr_assert_eq(conf_next(s, 1000, &m, NULL), 0);
                        long want = i < ok ? i : N;
                        cr_assert_eq(conf_msg_idx(m), want);
                        wal_msg_unref(m);
                }
                s->ops->close(s);
                w->ops->close(w);
                return;
        }
        cr_assert_fail("20 closes with 20000 appends in flight never cancelled one");
}

Test(memory, truncate_past_the_end_clamps)
{
        struct walimpls_wal *w = mopen("clamp", 1, WAL_ACCESS_RW);
        for (int i = 0; i < 3; i++)
                mappend(w, i);
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(0, 1000), NULL), 0);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.count, 0);
        cr_assert_eq(info.bytes, 0);
        cr_assert(wal_msgid_is_none(info.first_id));
        /* Later appends are not swallowed by the truncation point. */
        struct wal_msgid id = mappend(w, 3);
        cr_assert(wal_msgid_eq(id, WAL_MSGID(0, 4)));
        struct walimpls_scanner *s = NULL;
        cr_assert_eq(conf_read(w, "c", WAL_DELIVER_ALL, WAL_MSGID_NONE, &s, NULL), 0);
        wal_msg *m = NULL;
        cr_assert_eq(conf_next(s, 1000, &m, NULL), 0);
        cr_assert(wal_msgid_eq(wal_msg_id(m), id));
        wal_msg_unref(m);
        s->ops->close(s);
        cr_assert_eq(conf_read(w, "c", WAL_DELIVER_START_FROM, WAL_MSGID(0, 3), &s, NULL),
                     -ERANGE);
        w->ops->close(w);
}

Test(memory, info_counts_bytes)
{
        struct walimpls_wal *w = mopen("bytes", 1, WAL_ACCESS_RW);
        wal_msg *m = conf_msg(7, "12345");  /* payload 5 + "idx" 3 + "7" 1 */
        cr_assert_eq(conf_append_sync(w, m, NULL), 0);
        cr_assert_eq(conf_append_sync(w, m, NULL), 0);
        size_t one = wal_msg_size(m);
        wal_msg_unref(m);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.bytes, (int64_t)(2 * one));
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID(0, 1), NULL), 0);
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert_eq(info.bytes, (int64_t)one);
        cr_assert_eq(info.count, 1);
        cr_assert_not_null(strstr(info.durability, "memory"));
        w->ops->close(w);
}

Test(memory, bad_arguments_are_refused)
{
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        cr_assert_eq(mo->ops->open(mo, NULL, &w, NULL), -EINVAL);
        struct walimpls_open_opts oo = { .channel = "bad/name", .term = 1,
                                         .access = WAL_ACCESS_RW };
        cr_assert_eq(mo->ops->open(mo, &oo, &w, &e), -EINVAL);
        cr_assert_not_null(strstr(wal_error_message(e), "bad/name"), "%s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        oo = (struct walimpls_open_opts){ .channel = NULL, .term = 1, .access = WAL_ACCESS_RW };
        cr_assert_eq(mo->ops->open(mo, &oo, &w, NULL), -EINVAL);
        oo = (struct walimpls_open_opts){ .channel = "ok", .term = -1, .access = WAL_ACCESS_RW };
        cr_assert_eq(mo->ops->open(mo, &oo, &w, NULL), -EINVAL);
        oo = (struct walimpls_open_opts){ .channel = "ok", .term = 1, .access = 0 };
        cr_assert_eq(mo->ops->open(mo, &oo, &w, NULL), -EINVAL);
        oo.access = WAL_ACCESS_RW;
        cr_assert_eq(mo->ops->open(mo, &oo, NULL, NULL), -EINVAL);
        cr_assert_eq(mo->ops->list_channels(mo, NULL, NULL, NULL), -EINVAL);
        cr_assert_eq(mb->build(NULL, NULL, NULL), -EINVAL);

        w = mopen("args", 1, WAL_ACCESS_RW);
        cr_assert_eq(w->ops->append(w, NULL, conf_done_cb, NULL), -EINVAL);
        wal_msg *m = conf_msg(0, "x");
        cr_assert_eq(w->ops->append(w, m, NULL, NULL), -EINVAL);
        wal_msg_unref(m);
        cr_assert_eq(w->ops->truncate(w, WAL_MSGID_NONE, NULL), -EINVAL);
        cr_assert_eq(w->ops->info(w, NULL, NULL), -EINVAL);
        struct walimpls_scanner *s = NULL;
        cr_assert_eq(w->ops->read(w, NULL, &s, NULL), -EINVAL);
        cr_assert_eq(conf_read(w, "x", WAL_DELIVER_FROM_TIME_TICK, WAL_MSGID_NONE, &s, NULL),
                     -EINVAL);
        cr_assert_eq(conf_read(w, "x", WAL_DELIVER_START_FROM, WAL_MSGID_NONE, &s, NULL),
                     -EINVAL);
        cr_assert_eq(conf_read(w, "x", 99, WAL_MSGID_NONE, &s, NULL), -EINVAL);
        cr_assert_eq(conf_read(w, NULL, WAL_DELIVER_ALL, WAL_MSGID_NONE, &s, NULL), 0);
        cr_assert_str_eq(s->name, "");
        cr_assert_eq(s->ops->next(s, 0, NULL, NULL), -EINVAL);
        cr_assert_eq(s->ops->fd(NULL), -EINVAL);
        s->ops->interrupt(NULL);
        s->ops->close(s);
        w->ops->close(w);
}
