/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/test-conformance.c: the backend contract, case by case.
 *
 * Every case opens uniquely named channels on the opener conf_init() built
 * for $WAL_TEST_BACKEND and checks one clause of walimpls/walimpls.h: ID
 * order, read-after-write across terms, each deliver policy, read-only
 * refusals, close while appending and while scanning, the pollable fd,
 * fencing, truncation, field round trips, info, listing and persistence.
 * Cases that need a capability the builder does not claim are reported as
 * skipped with the reason (never silently).  Timeouts turn hangs into
 * failures.  Assertions run on the test thread only; helper threads report
 * through flags the test thread checks.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conformance.h"

TestSuite(conformance, .init = conf_init, .fini = conf_fini);

static char errbuf[CONF_ERRLEN];

/* Open or fail the test. */
static struct walimpls_wal *open_ok(const char *channel, int64_t term, enum wal_access access)
{
        struct walimpls_wal *w = NULL;
        errbuf[0] = '\0';
        int r = conf_open(conf.o, channel, term, access, &w, errbuf);
        cr_assert_eq(r, 0, "open %s term %lld %s: %s (%s)", channel, (long long)term,
                     access == WAL_ACCESS_RW ? "RW" : "RO", strerror(-r), errbuf);
        cr_assert_not_null(w);
        return w;
}

static struct walimpls_scanner *read_ok(struct walimpls_wal *w, enum wal_deliver_policy p,
                                        struct wal_msgid id)
{
        struct walimpls_scanner *s = NULL;
        errbuf[0] = '\0';
        int r = conf_read(w, "conformance", p, id, &s, errbuf);
        cr_assert_eq(r, 0, "read %s from %s: %s (%s)", wal_deliver_policy_name(p), conf_id(id),
                     strerror(-r), errbuf);
        cr_assert_not_null(s);
        return s;
}

/* Append @n messages "m-<first+i>" synchronously, storing IDs in @ids. */
static void append_n(struct walimpls_wal *w, long first, size_t n, struct wal_msgid *ids)
{
        for (size_t i = 0; i < n; i++) {
                wal_msg *m = conf_msg(first + (long)i, "m-%ld", first + (long)i);
                struct wal_msgid id = WAL_MSGID_NONE;
                int r = conf_append_sync(w, m, &id);
                wal_msg_unref(m);
                cr_assert_eq(r, 0, "append %ld: %s", first + (long)i, strerror(-r));
                cr_assert(!wal_msgid_is_none(id), "append %ld returned no ID", first + (long)i);
                if (ids)
                        ids[i] = id;
        }
}

/* Next message within @timeout_ms or fail; the caller unrefs it. */
static wal_msg *next_ok(struct walimpls_scanner *s, int timeout_ms)
{
        wal_msg *m = NULL;
        errbuf[0] = '\0';
        int r = conf_next(s, timeout_ms, &m, errbuf);
        cr_assert_eq(r, 0, "next: %s (%s)", strerror(-r), errbuf);
        cr_assert_not_null(m);
        cr_assert(wal_msg_is_immutable(m), "next delivered a mutable message");
        return m;
}

/* Read exactly the messages with @ids in order from @s. */
static void expect_ids(struct walimpls_scanner *s, const struct wal_msgid *ids, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                wal_msg *m = next_ok(s, 10000);
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[i]), "entry %zu: got %s, want %s", i,
                          conf_id(wal_msg_id(m)), conf_id(ids[i]));
                wal_msg_unref(m);
        }
}

static void expect_nothing(struct walimpls_scanner *s, int timeout_ms)
{
        wal_msg *m = NULL;
        int r = conf_next(s, timeout_ms, &m, NULL);
        cr_assert_eq(r, -ETIMEDOUT, "expected no message within %d ms, got %s %s", timeout_ms,
                     r == 0 ? "message" : strerror(-r), r == 0 ? conf_id(wal_msg_id(m)) : "");
}

/* ---- Builder ---- */

Test(conformance, builder_describes_itself)
{
        cr_assert_eq(conf.b->version, WALIMPLS_VERSION);
        cr_assert_not_null(conf.b->description);
        cr_assert_gt(strlen(conf.b->description), 0);
        cr_assert_not_null(conf.o->ops->open);
        cr_assert_not_null(conf.o->ops->close);
        if (conf.b->caps & WALIMPLS_CAP_LIST)
                cr_assert_not_null(conf.o->ops->list_channels,
                                   "WALIMPLS_CAP_LIST without list_channels");
}

/* ---- IDs and read-after-write ---- */

Test(conformance, ids_increase_in_call_order, .timeout = 60)
{
        char ch[64];
        conf_channel("ids", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        cr_assert_eq(w->term, 1);
        cr_assert_str_eq(w->channel, ch);
        /* Serialised calls without waiting in between: completions may run in
         * any order, IDs must follow the calls. */
        enum { N = 500 };
        struct conf_done *d[N];
        for (int i = 0; i < N; i++) {
                d[i] = conf_done_new();
                wal_msg *m = conf_msg(i, "ord-%d", i);
                int r = w->ops->append(w, m, conf_done_cb, d[i]);
                wal_msg_unref(m);
                cr_assert_eq(r, 0, "append %d: %s", i, strerror(-r));
        }
        for (int i = 0; i < N; i++) {
                cr_assert_eq(conf_done_wait(d[i], 30000), 0, "completion %d never ran", i);
                cr_assert_eq(d[i]->status, 0, "append %d: %s", i, strerror(-d[i]->status));
                cr_assert_eq(atomic_load(&d[i]->calls), 1);
                if (i > 0)
                        cr_assert_lt(wal_msgid_cmp(d[i - 1]->id, d[i]->id), 0,
                                     "ID %d (%s) not above ID %d (%s)", i, conf_id(d[i]->id),
                                     i - 1, conf_id(d[i - 1]->id));
        }
        struct wal_msgid ids[N];
        for (int i = 0; i < N; i++)
                ids[i] = d[i]->id;
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < N; i++) {
                wal_msg *m = next_ok(s, 10000);
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[i]));
                cr_assert_eq(conf_msg_idx(m), i);
                wal_msg_unref(m);
        }
        s->ops->close(s);
        w->ops->close(w);
        for (int i = 0; i < N; i++)
                conf_done_free(d[i]);
}

Test(conformance, read_after_write_across_terms, .timeout = 60)
{
        char ch[64];
        conf_channel("raw", ch);
        struct wal_msgid ids[30];
        for (int term = 1; term <= 3; term++) {
                struct walimpls_wal *w = open_ok(ch, term, WAL_ACCESS_RW);
                append_n(w, (term - 1) * 10, 10, ids + (term - 1) * 10);
                /* This term's writer sees every earlier term's data. */
                struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
                expect_ids(s, ids, (size_t)term * 10);
                s->ops->close(s);
                w->ops->close(w);
        }
        for (int i = 1; i < 30; i++)
                cr_assert_lt(wal_msgid_cmp(ids[i - 1], ids[i]), 0, "IDs not ascending across terms");
        struct walimpls_wal *ro = open_ok(ch, 3, WAL_ACCESS_RO);
        struct walimpls_scanner *s = read_ok(ro, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < 30; i++) {
                wal_msg *m = next_ok(s, 10000);
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[i]));
                size_t len;
                const char *p = wal_msg_payload(m, &len);
                char want[32];
                snprintf(want, sizeof(want), "m-%d", i);
                cr_assert_eq(len, strlen(want));
                cr_assert_eq(memcmp(p, want, len), 0);
                wal_msg_unref(m);
        }
        expect_nothing(s, 200);
        s->ops->close(s);
        ro->ops->close(ro);
}

/* ---- Deliver policies ---- */

Test(conformance, deliver_start_from_and_after, .timeout = 60)
{
        char ch[64];
        conf_channel("start", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct wal_msgid ids[20];
        append_n(w, 0, 20, ids);

        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_START_FROM, ids[7]);
        expect_ids(s, ids + 7, 13);
        expect_nothing(s, 200);
        s->ops->close(s);

        s = read_ok(w, WAL_DELIVER_START_AFTER, ids[7]);
        expect_ids(s, ids + 8, 12);
        s->ops->close(s);

        s = read_ok(w, WAL_DELIVER_START_FROM, ids[0]);
        expect_ids(s, ids, 20);
        s->ops->close(s);

        /* After the last ID: nothing now, then exactly what comes next. */
        s = read_ok(w, WAL_DELIVER_START_AFTER, ids[19]);
        expect_nothing(s, 300);
        struct wal_msgid more[2];
        append_n(w, 20, 2, more);
        expect_ids(s, more, 2);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, deliver_all_starts_at_first, .timeout = 30)
{
        char ch[64];
        conf_channel("all", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        /* A scanner made on an empty channel sees what is appended later. */
        struct wal_msgid ids[5];
        append_n(w, 0, 5, ids);
        expect_ids(s, ids, 5);
        s->ops->close(s);
        s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        expect_ids(s, ids, 5);
        expect_nothing(s, 200);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, deliver_latest_sees_only_new, .timeout = 30)
{
        char ch[64];
        conf_channel("latest", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        append_n(w, 0, 5, NULL);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_LATEST, WAL_MSGID_NONE);
        uint64_t t0 = t_now_ms();
        expect_nothing(s, 1000);
        cr_assert_geq(t_now_ms() - t0, 900, "next(1000) returned early");
        struct wal_msgid id[1];
        append_n(w, 5, 1, id);
        wal_msg *m = next_ok(s, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), id[0]), "latest delivered %s, want %s",
                  conf_id(wal_msg_id(m)), conf_id(id[0]));
        cr_assert_eq(conf_msg_idx(m), 5);
        wal_msg_unref(m);
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Read-only ---- */

Test(conformance, read_only_refuses_append_and_truncate, .timeout = 30)
{
        char ch[64];
        conf_channel("ro", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct wal_msgid ids[3];
        append_n(w, 0, 3, ids);
        struct walimpls_wal *ro = open_ok(ch, 1, WAL_ACCESS_RO);
        cr_assert_eq(ro->access, WAL_ACCESS_RO);
        struct conf_done *d = conf_done_new();
        wal_msg *m = conf_msg(9, "refused");
        int r = ro->ops->append(ro, m, conf_done_cb, d);
        wal_msg_unref(m);
        cr_assert_eq(r, -EROFS, "append on RO returned %d", r);
        t_sleep_ms(50);
        cr_assert_eq(atomic_load(&d->calls), 0, "a refused append ran its completion");
        conf_done_free(d);
        if (ro->ops->truncate) {
                wal_error *e = NULL;
                r = ro->ops->truncate(ro, ids[0], &e);
                cr_assert_eq(r, -EROFS, "truncate on RO returned %d", r);
                wal_error_free(e);
        }
        /* The read-only wal still reads. */
        struct walimpls_scanner *s = read_ok(ro, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        expect_ids(s, ids, 3);
        s->ops->close(s);
        ro->ops->close(ro);
        w->ops->close(w);
}

Test(conformance, read_only_open_of_missing_channel, .timeout = 30)
{
        char ch[64];
        conf_channel("missing", ch);
        struct walimpls_wal *w = NULL;
        int r = conf_open(conf.o, ch, 1, WAL_ACCESS_RO, &w, NULL);
        cr_assert_eq(r, -ENOENT, "RO open of a missing channel returned %d", r);
}

/* ---- Truncate ---- */

Test(conformance, truncate_then_reopen, .timeout = 30)
{
        char ch[64];
        conf_channel("trunc_reopen", ch);
        struct walimpls_wal *w = open_ok(ch, 4, WAL_ACCESS_RW);
        struct wal_msgid id[1];
        append_n(w, 0, 1, id);
        if (w->ops->truncate) {
                wal_error *e = NULL;
                int r = w->ops->truncate(w, id[0], &e);
                cr_assert_eq(r, 0, "truncate: %s", wal_error_message(e));
        } else {
                /* The adaptor reads a missing method as -EOPNOTSUPP: the
                 * builder must not claim what it cannot do. */
                cr_assert(!(conf.b->caps & WALIMPLS_CAP_TRUNCATE),
                          "WALIMPLS_CAP_TRUNCATE without a truncate method");
        }
        w->ops->close(w);
        w = open_ok(ch, 4, WAL_ACCESS_RW);
        /* Still writable after the reopen, IDs still ascending. */
        struct wal_msgid id2[1];
        append_n(w, 1, 1, id2);
        cr_assert_lt(wal_msgid_cmp(id[0], id2[0]), 0);
        w->ops->close(w);
}

/*
 * Backends may delete whole segments only: after truncate(ids[T]) the first
 * readable message is ids[f] with 0 < f <= T + 1.  Then every start position
 * below ids[f] must fail with -ERANGE and every one at or above must read
 * exactly from there.  For a backend that deletes exactly, f == T + 1.
 */
static int start_result(struct walimpls_wal *w, enum wal_deliver_policy p, struct wal_msgid at,
                        struct wal_msgid *got)
{
        struct walimpls_scanner *s = NULL;
        int r = conf_read(w, "probe", p, at, &s, NULL);
        if (r < 0)
                return r;
        wal_msg *m = NULL;
        r = conf_next(s, 10000, &m, NULL);
        if (r == 0) {
                *got = wal_msg_id(m);
                wal_msg_unref(m);
        }
        s->ops->close(s);
        return r;
}

/* A backend that does not claim WALIMPLS_CAP_TRUNCATE may accept truncate
 * (retention is elsewhere, as with Kafka) but must not lose data because of it. */
static void truncate_keeps_data(void)
{
        char ch[64];
        conf_channel("trunc_keep", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct wal_msgid ids[20];
        append_n(w, 0, 20, ids);
        if (w->ops->truncate) {
                wal_error *e = NULL;
                int r = w->ops->truncate(w, ids[9], &e);
                cr_assert(r == 0 || r == -EOPNOTSUPP, "truncate without the capability: %s",
                          wal_error_message(e));
                wal_error_free(e);
        }
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        expect_ids(s, ids, 20);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, truncate_frees_and_reports_erange, .timeout = 90)
{
        if (!(conf.b->caps & WALIMPLS_CAP_TRUNCATE)) {
                truncate_keeps_data();
                return;
        }
        char ch[64];
        conf_channel("trunc", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        cr_assert_not_null(w->ops->truncate, "WALIMPLS_CAP_TRUNCATE without truncate");
        enum { N = 1000, T = 499 };
        static struct wal_msgid ids[N];
        static char pad[1024];
        memset(pad, 'x', sizeof(pad) - 1);
        for (int i = 0; i < N; i++) {
                wal_msg *m = conf_msg(i, "%d:%s", i, pad);
                int r = conf_append_sync(w, m, &ids[i]);
                wal_msg_unref(m);
                cr_assert_eq(r, 0, "append %d: %s", i, strerror(-r));
        }
        /* One scanner parked at the start, one that read past the cut. */
        struct walimpls_scanner *early = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct walimpls_scanner *late = read_ok(w, WAL_DELIVER_START_FROM, ids[600]);
        wal_msg *m = next_ok(late, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ids[600]));
        wal_msg_unref(m);

        wal_error *e = NULL;
        int r = w->ops->truncate(w, ids[T], &e);
        cr_assert_eq(r, 0, "truncate(%s): %s", conf_id(ids[T]), wal_error_message(e));

        /* f: index of the first message ALL delivers (deletion may lag). */
        long f = -1;
        uint64_t deadline = t_now_ms() + 10000;
        for (;;) {
                struct wal_msgid first = WAL_MSGID_NONE;
                r = start_result(w, WAL_DELIVER_ALL, WAL_MSGID_NONE, &first);
                cr_assert_eq(r, 0, "ALL after truncate: %s", strerror(-r));
                for (long i = 0; i < N; i++)
                        if (wal_msgid_eq(ids[i], first))
                                f = i;
                cr_assert_geq(f, 0, "ALL delivered %s, which was never written", conf_id(first));
                if (f > 0 || t_now_ms() > deadline)
                        break;
                t_sleep_ms(200);
        }
        cr_log_info("%s: truncate(%d of %d) -> first retained index %ld", conf.backend, T, N, f);
        cr_assert_gt(f, 0, "truncate deleted nothing of %d messages of 1 KiB (give the "
                     "fixture smaller segments)", N);
        cr_assert_leq(f, T + 1, "truncate deleted messages above the truncation point");

        long probes[] = { 0, 1, T / 2, f - 1, f, T, T + 1, N - 1 };
        for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
                long i = probes[k];
                if (i < 0)
                        continue;
                struct wal_msgid got = WAL_MSGID_NONE;
                r = start_result(w, WAL_DELIVER_START_FROM, ids[i], &got);
                if (i < f) {
                        cr_assert_eq(r, -ERANGE, "start-from index %ld (< first %ld): %d, want "
                                     "-ERANGE", i, f, r);
                } else {
                        cr_assert_eq(r, 0, "start-from index %ld: %s", i, strerror(-r));
                        cr_assert(wal_msgid_eq(got, ids[i]), "start-from %ld gave %s", i,
                                  conf_id(got));
                }
                if (i + 1 >= N)
                        continue;
                r = start_result(w, WAL_DELIVER_START_AFTER, ids[i], &got);
                if (i + 1 < f) {
                        cr_assert_eq(r, -ERANGE, "start-after index %ld: %d, want -ERANGE", i, r);
                } else {
                        cr_assert_eq(r, 0, "start-after index %ld: %s", i, strerror(-r));
                        cr_assert(wal_msgid_eq(got, ids[i + 1]), "start-after %ld gave %s", i,
                                  conf_id(got));
                }
        }

        /* The parked scanner may deliver a prefetched contiguous run, but then
         * must fail with -ERANGE before any gap: never a silent skip. */
        long expect = 0;
        for (;;) {
                m = NULL;
                r = conf_next(early, 5000, &m, NULL);
                if (r != 0)
                        break;
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[expect]),
                          "parked scanner skipped: got %s, want index %ld (%s)",
                          conf_id(wal_msg_id(m)), expect, conf_id(ids[expect]));
                wal_msg_unref(m);
                expect++;
                if (expect == N)
                        break;
        }
        if (expect < N) {
                cr_assert_eq(r, -ERANGE, "parked scanner at index %ld: %d, want -ERANGE", expect,
                             r);
                cr_assert_lt(expect, f, "-ERANGE at retained index %ld", expect);
        }
        /* The scanner past the cut goes on undisturbed. */
        m = next_ok(late, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(m), ids[601]));
        wal_msg_unref(m);

        if (w->ops->info) {
                struct walimpls_info info;
                r = w->ops->info(w, &info, NULL);
                cr_assert_eq(r, 0);
                cr_assert(wal_msgid_eq(info.first_id, ids[f]), "info.first_id %s, want %s",
                          conf_id(info.first_id), conf_id(ids[f]));
                cr_assert(wal_msgid_eq(info.last_id, ids[N - 1]));
                if (info.count >= 0)
                        cr_assert_eq(info.count, N - f);
        }
        early->ops->close(early);
        late->ops->close(late);
        w->ops->close(w);
}

/* ---- Close while busy ---- */

Test(conformance, close_while_appending, .timeout = 120)
{
        char ch[64];
        conf_channel("closing", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        enum { N = 5000 };
        struct conf_done **d = calloc(N, sizeof(*d));
        for (int i = 0; i < N; i++) {
                d[i] = conf_done_new();
                wal_msg *m = conf_msg(i, "inflight-%d", i);
                int r = w->ops->append(w, m, conf_done_cb, d[i]);
                wal_msg_unref(m);
                cr_assert_eq(r, 0, "append %d: %s", i, strerror(-r));
        }
        w->ops->close(w);
        /* Every completion ran exactly once, before close returned. */
        int n_ok = 0, n_cancel = 0;
        long last_ok = -1;
        for (int i = 0; i < N; i++) {
                cr_assert_eq(atomic_load(&d[i]->calls), 1,
                             "completion %d ran %d times before close returned", i,
                             atomic_load(&d[i]->calls));
                int st = d[i]->status;
                cr_assert(st == 0 || st == -ECANCELED, "append %d completed with %d", i, st);
                if (st == 0) {
                        if (last_ok >= 0)
                                cr_assert_lt(wal_msgid_cmp(d[last_ok]->id, d[i]->id), 0);
                        last_ok = i;
                        n_ok++;
                } else {
                        n_cancel++;
                }
        }
        cr_log_info("%s: close with %d in flight: %d ok, %d cancelled", conf.backend, N, n_ok,
                    n_cancel);
        t_sleep_ms(100);
        for (int i = 0; i < N; i++)
                cr_assert_eq(atomic_load(&d[i]->calls), 1, "completion %d ran after close", i);

        /* Every acknowledged message is readable after reopen, in order. */
        w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        long prev = -1;
        int seen_ok = 0;
        while (prev < last_ok) {
                wal_msg *m = NULL;
                int r = conf_next(s, 10000, &m, NULL);
                cr_assert_eq(r, 0, "reading back after index %ld (last acked %ld): %s", prev,
                             last_ok, strerror(-r));
                long idx = conf_msg_idx(m);
                cr_assert_gt(idx, prev, "order broken: index %ld after %ld", idx, prev);
                for (long j = prev + 1; j < idx; j++)
                        cr_assert_neq(d[j]->status, 0, "acknowledged append %ld is missing", j);
                if (d[idx]->status == 0) {
                        cr_assert(wal_msgid_eq(wal_msg_id(m), d[idx]->id));
                        seen_ok++;
                }
                wal_msg_unref(m);
                prev = idx;
        }
        cr_assert_eq(seen_ok, n_ok);
        s->ops->close(s);
        w->ops->close(w);
        for (int i = 0; i < N; i++)
                conf_done_free(d[i]);
        free(d);
}

/* ---- Flush (optional, interface version 3) ---- */

struct flusher {
        struct walimpls_wal *w;
        int id;
        atomic_int failures;       /* checks that failed on this thread */
        char err[CONF_ERRLEN];
};

enum { FLUSH_THREADS = 4, FLUSH_PER_THREAD = 300, FLUSH_EVERY = 7 };

/* Append FLUSH_PER_THREAD messages, flushing after every FLUSH_EVERY of them
 * (and after the last): each flush must find every earlier append of this
 * thread completed, exactly once and successfully. */
static void *flusher_thread(void *arg)
{
        struct flusher *f = arg;
        struct conf_done *d[FLUSH_PER_THREAD];
        int made = 0;
        for (int i = 0; i < FLUSH_PER_THREAD; i++) {
                d[i] = conf_done_new();
                made++;
                wal_msg *m = conf_msg(f->id * FLUSH_PER_THREAD + i, "flush-%d-%d", f->id, i);
                int r = f->w->ops->append(f->w, m, conf_done_cb, d[i]);
                wal_msg_unref(m);
                if (r < 0) {
                        conf_fail(f->err, "thread %d append %d: %s", f->id, i, strerror(-r));
                        atomic_fetch_add(&f->failures, 1);
                        break;
                }
                if ((i + 1) % FLUSH_EVERY && i + 1 < FLUSH_PER_THREAD)
                        continue;
                r = walimpls_flush(f->w, -1, NULL);
                if (r < 0) {
                        conf_fail(f->err, "thread %d flush after %d: %s", f->id, i,
                                  strerror(-r));
                        atomic_fetch_add(&f->failures, 1);
                        break;
                }
                for (int j = 0; j <= i; j++) {
                        if (atomic_load(&d[j]->calls) != 1 || d[j]->status != 0) {
                                conf_fail(f->err, "thread %d: after a flush following append "
                                          "%d, append %d has run %d times, status %d", f->id,
                                          i, j, atomic_load(&d[j]->calls), d[j]->status);
                                atomic_fetch_add(&f->failures, 1);
                                break;
                        }
                }
        }
        /* Wait before freeing: a completion may still be due after a failure. */
        for (int i = 0; i < made; i++) {
                (void)conf_done_wait(d[i], 30000);
                conf_done_free(d[i]);
        }
        return NULL;
}

Test(conformance, flush_completes_earlier_appends, .timeout = 120)
{
        char ch[64];
        conf_channel("flush", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        int r = walimpls_flush(w, -1, NULL);
        bool has = w->ops->version >= 3 && w->ops->flush;
        if (!has) {
                cr_assert_eq(r, -EOPNOTSUPP, "no flush method, yet walimpls_flush gave %d", r);
                cr_log_info("%s: no wal.flush; walimpls_flush reports -EOPNOTSUPP",
                            conf.backend);
                w->ops->close(w);
                return;
        }
        cr_assert_eq(r, 0, "flush with nothing appended: %s", strerror(-r));
        cr_assert_eq(walimpls_flush(w, 0, NULL), 0, "flush(0) with nothing pending");

        /* Several threads appending and flushing at once. */
        struct flusher f[FLUSH_THREADS];
        pthread_t t[FLUSH_THREADS];
        for (int i = 0; i < FLUSH_THREADS; i++) {
                f[i] = (struct flusher){ .w = w, .id = i };
                cr_assert_eq(pthread_create(&t[i], NULL, flusher_thread, &f[i]), 0);
        }
        for (int i = 0; i < FLUSH_THREADS; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(atomic_load(&f[i].failures), 0, "%s", f[i].err);
        }

        /* This thread has flushed before; an append it never flushes must
         * still complete on its own. */
        struct conf_done *lone = conf_done_new();
        wal_msg *lm = conf_msg(-1, "unflushed");
        cr_assert_eq(w->ops->append(w, lm, conf_done_cb, lone), 0);
        wal_msg_unref(lm);
        cr_assert_eq(conf_done_wait(lone, 20000), 0, "an append without flush never completed");
        cr_assert_eq(lone->status, 0);
        conf_done_free(lone);

        /* Asynchronous appends from this thread, then one flush covers all. */
        enum { N = 200 };
        struct conf_done *d[N];
        for (int i = 0; i < N; i++) {
                d[i] = conf_done_new();
                wal_msg *m = conf_msg(i, "after-%d", i);
                cr_assert_eq(w->ops->append(w, m, conf_done_cb, d[i]), 0);
                wal_msg_unref(m);
        }
        cr_assert_eq(walimpls_flush(w, 30000, NULL), 0);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(atomic_load(&d[i]->calls), 1, "append %d not complete after flush",
                             i);
                cr_assert_eq(d[i]->status, 0);
                if (i)
                        cr_assert_lt(wal_msgid_cmp(d[i - 1]->id, d[i]->id), 0);
        }

        /* Everything flushed is there, in order, once. */
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < FLUSH_THREADS * FLUSH_PER_THREAD + 1 + N; i++)
                wal_msg_unref(next_ok(s, 10000));
        expect_nothing(s, 0);
        s->ops->close(s);

        /* A read-only wal has nothing of its own to flush. */
        struct walimpls_wal *ro = open_ok(ch, 1, WAL_ACCESS_RO);
        cr_assert_eq(walimpls_flush(ro, -1, NULL), 0);
        ro->ops->close(ro);
        w->ops->close(w);
        for (int i = 0; i < N; i++)
                conf_done_free(d[i]);
}

struct blocked_next {
        struct walimpls_scanner *s;
        int timeout_ms;
        atomic_bool done;
        int r;
        wal_msg *m;
};

static void *blocked_next_thread(void *arg)
{
        struct blocked_next *b = arg;
        b->r = conf_next(b->s, b->timeout_ms, &b->m, NULL);
        atomic_store(&b->done, true);
        return NULL;
}

static void wait_done(struct blocked_next *b, unsigned ms, const char *what)
{
        uint64_t dl = t_now_ms() + ms;
        while (!atomic_load(&b->done) && t_now_ms() < dl)
                t_sleep_ms(2);
        cr_assert(atomic_load(&b->done), "%s: next still blocked after %u ms", what, ms);
}

Test(conformance, close_while_scanning, .timeout = 30)
{
        char ch[64];
        conf_channel("scanclose", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct blocked_next b = { .s = s, .timeout_ms = -1 };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, blocked_next_thread, &b), 0);
        t_sleep_ms(200);
        cr_assert(!atomic_load(&b.done), "next(-1) on an empty channel returned %d", b.r);
        uint64_t t0 = t_now_ms();
        s->ops->interrupt(s);
        wait_done(&b, 2000, "interrupt");
        pthread_join(th, NULL);
        cr_assert_eq(b.r, -ECANCELED, "interrupted next returned %d", b.r);
        cr_log_info("%s: interrupt woke next after %llu ms", conf.backend,
                    (unsigned long long)(t_now_ms() - t0));
        /* Sticky: later calls are cancelled too, even with data present. */
        append_n(w, 0, 1, NULL);
        wal_msg *m = NULL;
        cr_assert_eq(conf_next(s, 0, &m, NULL), -ECANCELED);
        cr_assert_eq(conf_next(s, 500, &m, NULL), -ECANCELED);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, blocking_next_wakes_on_append, .timeout = 30)
{
        char ch[64];
        conf_channel("wake", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct blocked_next b = { .s = s, .timeout_ms = -1 };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, blocked_next_thread, &b), 0);
        t_sleep_ms(100);
        cr_assert(!atomic_load(&b.done));
        struct wal_msgid id[1];
        append_n(w, 0, 1, id);
        wait_done(&b, 10000, "append");
        pthread_join(th, NULL);
        cr_assert_eq(b.r, 0, "next: %s", strerror(-b.r));
        cr_assert(wal_msgid_eq(wal_msg_id(b.m), id[0]));
        wal_msg_unref(b.m);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, next_zero_times_out_on_empty, .timeout = 30)
{
        char ch[64];
        conf_channel("empty", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *m = NULL;
        uint64_t t0 = t_now_ms();
        cr_assert_eq(conf_next(s, 0, &m, NULL), -ETIMEDOUT);
        cr_assert_lt(t_now_ms() - t0, 500, "next(0) blocked");
        t0 = t_now_ms();
        cr_assert_eq(conf_next(s, 300, &m, NULL), -ETIMEDOUT);
        uint64_t el = t_now_ms() - t0;
        cr_assert_geq(el, 250, "next(300) returned after %llu ms", (unsigned long long)el);
        cr_assert_lt(el, 3000, "next(300) took %llu ms", (unsigned long long)el);
        s->ops->close(s);
        w->ops->close(w);
}

Test(conformance, scanner_fd_polls_readable_on_append, .timeout = 30)
{
        char ch[64];
        conf_channel("pollfd", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        int fd = s->ops->fd(s);
        cr_assert_geq(fd, 0, "scanner fd %d", fd);
        cr_assert_eq(s->ops->fd(s), fd, "fd changed between calls");
        for (int round = 0; round < 3; round++) {
                wal_msg *m = NULL;
                cr_assert_eq(conf_next(s, 0, &m, NULL), -ETIMEDOUT);
                /* Append without waiting for the completion; the fd must turn
                 * readable once the message can be delivered. */
                struct conf_done *d = conf_done_new();
                m = conf_msg(round, "poll-%d", round);
                cr_assert_eq(w->ops->append(w, m, conf_done_cb, d), 0);
                wal_msg_unref(m);
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r = poll(&p, 1, 10000);
                cr_assert_eq(r, 1, "round %d: fd not readable within 10 s", round);
                cr_assert(p.revents & POLLIN);
                m = next_ok(s, 5000);
                cr_assert_eq(conf_msg_idx(m), round);
                wal_msg_unref(m);
                cr_assert_eq(conf_done_wait(d, 10000), 0);
                cr_assert_eq(d->status, 0);
                conf_done_free(d);
        }
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Fencing ---- */

/* Without WALIMPLS_CAP_FENCING a newer term does not stop the older writer:
 * both keep appending and everything they acknowledged is readable. */
static void unfenced_writers_both_land(void)
{
        char ch[64];
        conf_channel("nofence", ch);
        struct walimpls_wal *w1 = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_wal *w2 = open_ok(ch, 2, WAL_ACCESS_RW);
        struct wal_msgid ids[2];
        append_n(w1, 0, 1, &ids[0]);
        append_n(w2, 1, 1, &ids[1]);
        struct walimpls_scanner *s = read_ok(w2, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        expect_ids(s, ids, 2);
        s->ops->close(s);
        w1->ops->close(w1);
        w2->ops->close(w2);
}

Test(conformance, fencing_by_term, .timeout = 30)
{
        if (!(conf.b->caps & WALIMPLS_CAP_FENCING)) {
                unfenced_writers_both_land();
                return;
        }
        char ch[64];
        conf_channel("fence", ch);
        struct walimpls_wal *w1 = open_ok(ch, 1, WAL_ACCESS_RW);
        struct wal_msgid before[1];
        append_n(w1, 0, 1, before);
        struct walimpls_wal *w2 = open_ok(ch, 2, WAL_ACCESS_RW);

        /* Term 1 is fenced: refused at once or completed with -ESTALE. */
        struct conf_done *d = conf_done_new();
        wal_msg *m = conf_msg(1, "fenced");
        int r = w1->ops->append(w1, m, conf_done_cb, d);
        wal_msg_unref(m);
        if (r == 0) {
                cr_assert_eq(conf_done_wait(d, 10000), 0);
                r = d->status;
        }
        cr_assert_eq(r, -ESTALE, "term-1 append after term 2 opened: %d, want -ESTALE", r);
        conf_done_free(d);

        /* A second RW open at term 1 is refused while term 2 owns the channel. */
        struct walimpls_wal *w = NULL;
        r = conf_open(conf.o, ch, 1, WAL_ACCESS_RW, &w, NULL);
        cr_assert_eq(r, -ESTALE, "RW open at term 1 under term 2: %d, want -ESTALE", r);

        struct wal_msgid after[1];
        append_n(w2, 2, 1, after);
        struct walimpls_scanner *s = read_ok(w2, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *a = next_ok(s, 10000), *b = next_ok(s, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(a), before[0]));
        cr_assert(wal_msgid_eq(wal_msg_id(b), after[0]), "the fenced append became visible");
        wal_msg_unref(a);
        wal_msg_unref(b);
        expect_nothing(s, 200);
        s->ops->close(s);
        w1->ops->close(w1);
        w2->ops->close(w2);

        /* The recorded term outlives the wals. */
        r = conf_open(conf.o, ch, 1, WAL_ACCESS_RW, &w, NULL);
        cr_assert_eq(r, -ESTALE, "RW open at term 1 after term 2 closed: %d", r);
        w = open_ok(ch, 2, WAL_ACCESS_RW);
        w->ops->close(w);
}

/* ---- Round trips ---- */

struct rt_case {
        enum wal_msg_type type;
        size_t len;
        int n_props;
        const char *vchannel;
        uint64_t tt;
        struct wal_msgid lc;
        uint64_t txn;
        uint32_t keepalive;
};

Test(conformance, fields_round_trip, .timeout = 30)
{
        char ch[64];
        conf_channel("fields", ch);
        const int64_t term = 5;
        struct walimpls_wal *w = open_ok(ch, term, WAL_ACCESS_RW);
        static const struct rt_case cases[] = {
                { WAL_MSG_DATA, 1024, 2, "v-1", 0x123456789abcull, { 0, 12345 }, 0, 0 },
                { WAL_MSG_DATA, 0, 0, NULL, 1, { UINT64_MAX, UINT64_MAX }, 0, 0 },
                { WAL_MSG_TIME_TICK, 0, 1, "v1", (1700000000000ull << 18) | 7, { 17, 3 }, 0, 0 },
                { WAL_MSG_TXN_BEGIN, 16, 1, "v2", 42, { 0, 1 }, 42, 1500 },
                { WAL_MSG_DATA, 300, 20, "v2", 43, { 0, 2 }, 42, 1500 },
                { WAL_MSG_TXN_COMMIT, 0, 0, "v2", 44, { 0, 3 }, 42, 0 },
                { WAL_MSG_TXN_ROLLBACK, 1, 3, NULL, UINT64_MAX >> 1, { 0, 0 }, UINT64_MAX, 1 },
                { WAL_MSG_DATA, 70000, 1, NULL, 99, { 0, 4 }, 0, 0 },
        };
        enum { NC = sizeof(cases) / sizeof(cases[0]) };
        wal_msg *sent[NC];
        struct wal_msgid ids[NC];
        for (int c = 0; c < NC; c++) {
                const struct rt_case *k = &cases[c];
                unsigned char *p = malloc(k->len ? k->len : 1);
                for (size_t i = 0; i < k->len; i++)
                        p[i] = (unsigned char)(i * 7 + (size_t)c); /* every byte value, NULs too */
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new(k->type, k->len ? p : NULL, k->len, &m), 0);
                free(p);
                for (int i = 0; i < k->n_props; i++) {
                        char key[32], val[64];
                        snprintf(key, sizeof(key), "key%d", i);
                        snprintf(val, sizeof(val), "val %d = \xc3\xbc \"q\" \\ %d", i, c);
                        cr_assert_eq(wal_msg_set_prop(m, key, val), 0);
                }
                if (k->n_props > 1)
                        cr_assert_eq(wal_msg_set_prop(m, "empty", ""), 0);
                if (k->vchannel)
                        cr_assert_eq(wal_msg_set_vchannel(m, k->vchannel), 0);
                cr_assert_eq(wal_msg_set_time_tick(m, k->tt), 0);
                cr_assert_eq(wal_msg_set_term(m, term), 0);
                cr_assert_eq(wal_msg_set_last_confirmed(m, k->lc), 0);
                cr_assert_eq(wal_msg_set_txn(m, k->txn, k->keepalive), 0);
                int r = conf_append_sync(w, m, &ids[c]);
                cr_assert_eq(r, 0, "append case %d: %s", c, strerror(-r));
                sent[c] = m;
        }
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int c = 0; c < NC; c++) {
                wal_msg *g = next_ok(s, 10000), *m = sent[c];
                cr_assert(wal_msgid_eq(wal_msg_id(g), ids[c]), "case %d: ID", c);
                cr_assert_eq(wal_msg_type(g), wal_msg_type(m), "case %d: type", c);
                size_t gl, ml;
                const void *gp = wal_msg_payload(g, &gl), *mp = wal_msg_payload(m, &ml);
                cr_assert_eq(gl, ml, "case %d: payload length %zu, want %zu", c, gl, ml);
                if (ml)
                        cr_assert_eq(memcmp(gp, mp, ml), 0, "case %d: payload bytes", c);
                cr_assert_eq(wal_msg_prop_count(g), wal_msg_prop_count(m), "case %d: props", c);
                for (size_t i = 0; i < wal_msg_prop_count(m); i++) {
                        const char *k, *v;
                        cr_assert_eq(wal_msg_prop_at(m, i, &k, &v), 0);
                        const char *gv = wal_msg_prop(g, k);
                        cr_assert_not_null(gv, "case %d: property %s lost", c, k);
                        cr_assert_str_eq(gv, v, "case %d: property %s", c, k);
                }
                if (wal_msg_vchannel(m))
                        cr_assert_str_eq(wal_msg_vchannel(g) ?: "(null)", wal_msg_vchannel(m),
                                         "case %d: vchannel", c);
                else
                        cr_assert_null(wal_msg_vchannel(g), "case %d: vchannel appeared", c);
                cr_assert_eq(wal_msg_time_tick(g), wal_msg_time_tick(m), "case %d: time tick", c);
                cr_assert_eq(wal_msg_term(g), term, "case %d: term", c);
                cr_assert(wal_msgid_eq(wal_msg_last_confirmed(g), wal_msg_last_confirmed(m)),
                          "case %d: last confirmed %s, want %s", c,
                          conf_id(wal_msg_last_confirmed(g)), conf_id(wal_msg_last_confirmed(m)));
                cr_assert_eq(wal_msg_txn_id(g), wal_msg_txn_id(m), "case %d: txn id", c);
                cr_assert_eq(wal_msg_txn_keepalive_ms(g), wal_msg_txn_keepalive_ms(m),
                             "case %d: txn keepalive", c);
                wal_msg_unref(g);
                wal_msg_unref(m);
        }
        s->ops->close(s);
        w->ops->close(w);
}

/* ---- Info, listing, persistence ---- */

Test(conformance, info_reports_first_and_last, .timeout = 30)
{
        char ch[64];
        conf_channel("info", ch);
        struct walimpls_wal *w = open_ok(ch, 3, WAL_ACCESS_RW);
        /* Optional in the interface, required here: `walctl info` and
         * wal_info() depend on it. */
        cr_assert_not_null(w->ops->info, "backend '%s' has no info method", conf.backend);
        struct walimpls_info info;
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert(wal_msgid_is_none(info.first_id) && wal_msgid_is_none(info.last_id),
                  "empty channel: first %s last %s", conf_id(info.first_id),
                  conf_id(info.last_id));
        cr_assert(info.count == 0 || info.count == -1);
        cr_assert_not_null(info.durability);
        struct wal_msgid ids[5];
        append_n(w, 0, 5, ids);
        cr_assert_eq(w->ops->info(w, &info, NULL), 0);
        cr_assert(wal_msgid_eq(info.first_id, ids[0]), "first_id %s, want %s",
                  conf_id(info.first_id), conf_id(ids[0]));
        cr_assert(wal_msgid_eq(info.last_id, ids[4]), "last_id %s, want %s",
                  conf_id(info.last_id), conf_id(ids[4]));
        cr_assert(info.count == 5 || info.count == -1, "count %lld", (long long)info.count);
        cr_assert(info.term == 3 || info.term == -1, "term %lld", (long long)info.term);
        cr_assert(info.bytes == -1 || info.bytes > 0);
        /* A read-only wal describes the same channel. */
        struct walimpls_wal *ro = open_ok(ch, 3, WAL_ACCESS_RO);
        struct walimpls_info ri;
        cr_assert_eq(ro->ops->info(ro, &ri, NULL), 0);
        cr_assert(wal_msgid_eq(ri.last_id, ids[4]));
        ro->ops->close(ro);
        w->ops->close(w);
}

struct list_seen {
        const char *want[2];
        bool seen[2];
        int calls;
};

static int list_cb(void *arg, const char *channel)
{
        struct list_seen *ls = arg;
        ls->calls++;
        for (int i = 0; i < 2; i++)
                if (strcmp(channel, ls->want[i]) == 0)
                        ls->seen[i] = true;
        return 0;
}

static int list_stop_cb(void *arg, const char *channel)
{
        (void)channel;
        (*(int *)arg)++;
        return 7;
}

Test(conformance, list_channels, .timeout = 30)
{
        if (!(conf.b->caps & WALIMPLS_CAP_LIST)) {
                /* Not claimed: the method must be absent or say so. */
                int calls = 0;
                int r = conf.o->ops->list_channels
                                ? conf.o->ops->list_channels(conf.o, list_stop_cb, &calls, NULL)
                                : -EOPNOTSUPP;
                cr_assert_eq(r, -EOPNOTSUPP, "list_channels without WALIMPLS_CAP_LIST: %d", r);
                return;
        }
        char a[64], b[64];
        conf_channel("list_a", a);
        conf_channel("list_b", b);
        struct walimpls_wal *wa = open_ok(a, 1, WAL_ACCESS_RW);
        struct walimpls_wal *wb = open_ok(b, 1, WAL_ACCESS_RW);
        append_n(wa, 0, 1, NULL);
        append_n(wb, 0, 1, NULL);
        struct list_seen ls = { .want = { a, b } };
        int r = conf.o->ops->list_channels(conf.o, list_cb, &ls, NULL);
        cr_assert_eq(r, 0);
        cr_assert(ls.seen[0] && ls.seen[1], "list missed %s%s%s", ls.seen[0] ? "" : a,
                  ls.seen[0] || ls.seen[1] ? "" : " and ", ls.seen[1] ? "" : b);
        int calls = 0;
        r = conf.o->ops->list_channels(conf.o, list_stop_cb, &calls, NULL);
        cr_assert_eq(r, 7, "a non-zero callback value must stop and be returned");
        cr_assert_eq(calls, 1);
        wa->ops->close(wa);
        wb->ops->close(wb);
}

Test(conformance, persistence_across_openers, .timeout = 60)
{
        char ch[64];
        conf_channel("persist", ch);
        struct walimpls_wal *w = open_ok(ch, 2, WAL_ACCESS_RW);
        struct wal_msgid ids[10];
        append_n(w, 0, 10, ids);
        w->ops->close(w);
        conf.o->ops->close(conf.o);
        conf.o = NULL;

        wal_error *e = NULL;
        int r = conf.b->build(conf.cfg, &conf.o, &e);
        cr_assert_eq(r, 0, "second build: %s", wal_error_message(e));
        if (!(conf.b->caps & WALIMPLS_CAP_PERSISTENT)) {
                /* Not claimed: a new opener starts empty. */
                r = conf_open(conf.o, ch, 2, WAL_ACCESS_RO, &w, NULL);
                cr_assert_eq(r, -ENOENT, "a non-persistent backend's new opener found %s: %d",
                             ch, r);
                return;
        }
        w = open_ok(ch, 2, WAL_ACCESS_RO);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < 10; i++) {
                wal_msg *m = next_ok(s, 10000);
                cr_assert(wal_msgid_eq(wal_msg_id(m), ids[i]));
                cr_assert_eq(conf_msg_idx(m), i);
                wal_msg_unref(m);
        }
        s->ops->close(s);
        w->ops->close(w);
        /* The term is persistent too: a lower term is still refused. */
        if (conf.b->caps & WALIMPLS_CAP_FENCING) {
                r = conf_open(conf.o, ch, 1, WAL_ACCESS_RW, &w, NULL);
                cr_assert_eq(r, -ESTALE, "RW open at term 1 after term 2 (new opener): %d", r);
        }
        w = open_ok(ch, 2, WAL_ACCESS_RW);
        struct wal_msgid next[1];
        append_n(w, 10, 1, next);
        cr_assert_lt(wal_msgid_cmp(ids[9], next[0]), 0, "IDs restarted after reopen");
        w->ops->close(w);
}

/* ---- Isolation ---- */

Test(conformance, read_only_wal_tails_the_writer, .timeout = 30)
{
        char ch[64];
        conf_channel("rotail", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_wal *ro = open_ok(ch, 1, WAL_ACCESS_RO);
        struct walimpls_scanner *s = read_ok(ro, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct wal_msgid ids[10];
        for (int i = 0; i < 10; i++) {
                append_n(w, i, 1, &ids[i]);
                expect_ids(s, &ids[i], 1);
        }
        s->ops->close(s);
        ro->ops->close(ro);
        w->ops->close(w);
}

Test(conformance, channels_are_isolated, .timeout = 30)
{
        char a[64], b[64];
        conf_channel("iso_a", a);
        conf_channel("iso_b", b);
        struct walimpls_wal *wa = open_ok(a, 1, WAL_ACCESS_RW);
        struct walimpls_wal *wb = open_ok(b, 7, WAL_ACCESS_RW);
        struct wal_msgid ia[3], ib[2];
        append_n(wa, 0, 3, ia);
        append_n(wb, 100, 2, ib);
        struct walimpls_scanner *sa = read_ok(wa, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct walimpls_scanner *sb = read_ok(wb, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        expect_ids(sa, ia, 3);
        expect_ids(sb, ib, 2);
        expect_nothing(sa, 100);
        expect_nothing(sb, 100);
        sa->ops->close(sa);
        sb->ops->close(sb);
        /* Terms are per channel: term 1 on a does not conflict with term 7 on b. */
        wa->ops->close(wa);
        wa = open_ok(a, 1, WAL_ACCESS_RW);
        wa->ops->close(wa);
        wb->ops->close(wb);
}

Test(conformance, append_leaves_the_message_alone, .timeout = 30)
{
        char ch[64];
        conf_channel("borrow", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        wal_msg *m = conf_msg(1, "same object");
        struct wal_msgid id1, id2;
        cr_assert_eq(conf_append_sync(w, m, &id1), 0);
        cr_assert(!wal_msg_is_immutable(m), "append froze the caller's message");
        cr_assert(wal_msgid_is_none(wal_msg_id(m)));
        /* The caller may change and append the same object again. */
        cr_assert_eq(wal_msg_set_prop(m, "idx", "2"), 0);
        cr_assert_eq(conf_append_sync(w, m, &id2), 0);
        wal_msg_unref(m);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        wal_msg *a = next_ok(s, 10000), *b = next_ok(s, 10000);
        cr_assert(wal_msgid_eq(wal_msg_id(a), id1));
        cr_assert_eq(conf_msg_idx(a), 1, "the stored copy changed after append returned");
        cr_assert(wal_msgid_eq(wal_msg_id(b), id2));
        cr_assert_eq(conf_msg_idx(b), 2);
        wal_msg_unref(a);
        wal_msg_unref(b);
        s->ops->close(s);
        w->ops->close(w);
}

/* wal.append_take (interface 4): the backend keeps the caller's object,
 * frozen with the ID its completion reports; a refused take leaves it
 * alone.  Without the method, walimpls_append_take() appends a copy. */
Test(conformance, append_take_keeps_and_freezes, .timeout = 60)
{
        char ch[64];
        conf_channel("take", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        bool has = walimpls_has_append_take(w);
        enum { N = 64 };
        wal_msg *ms[N];
        struct conf_done *d[N];
        for (int i = 0; i < N; i++) {
                ms[i] = conf_msg(i, "take %d", i);
                d[i] = conf_done_new();
                int r = walimpls_append_take(w, ms[i], conf_done_cb, d[i]);
                cr_assert_eq(r, 0, "take %d: %s", i, strerror(-r));
                if (has) {
                        cr_assert(wal_msg_is_immutable(ms[i]),
                                  "append_take returned 0 without freezing message %d", i);
                        cr_assert(!wal_msgid_is_none(wal_msg_id(ms[i])));
                } else {
                        cr_assert(!wal_msg_is_immutable(ms[i]), "append froze message %d", i);
                }
        }
        for (int i = 0; i < N; i++) {
                cr_assert_eq(conf_done_wait(d[i], 30000), 0, "completion %d", i);
                cr_assert_eq(atomic_load(&d[i]->calls), 1);
                cr_assert_eq(d[i]->status, 0, "take %d completed with %s", i,
                             strerror(-d[i]->status));
                if (has)
                        cr_assert(wal_msgid_eq(wal_msg_id(ms[i]), d[i]->id),
                                  "message %d frozen with %s, completion says %s", i,
                                  conf_id(wal_msg_id(ms[i])), conf_id(d[i]->id));
                if (i > 0)
                        cr_assert(wal_msgid_cmp(d[i - 1]->id, d[i]->id) < 0,
                                  "IDs out of call order at %d", i);
        }
        /* The caller's references go; the backend's keep the records. */
        for (int i = 0; i < N; i++)
                wal_msg_unref(ms[i]);
        struct walimpls_scanner *s = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        for (int i = 0; i < N; i++) {
                wal_msg *m = next_ok(s, 10000);
                cr_assert(wal_msgid_eq(wal_msg_id(m), d[i]->id));
                cr_assert_eq(conf_msg_idx(m), i);
                wal_msg_unref(m);
                conf_done_free(d[i]);
        }
        s->ops->close(s);

        if (!(conf.b->caps & WALIMPLS_CAP_FENCING)) {
                w->ops->close(w);
                return;
        }
        /* Fenced: refused, and the message stays the caller's, mutable. */
        struct walimpls_wal *w2 = open_ok(ch, 2, WAL_ACCESS_RW);
        wal_msg *m = conf_msg(N, "after the fence");
        struct conf_done *late = conf_done_new();
        int r = walimpls_append_take(w, m, conf_done_cb, late);
        if (r == 0) {
                /* A backend that learns of the fence later fails the
                 * completion instead. */
                cr_assert_eq(conf_done_wait(late, 30000), 0);
                cr_assert_eq(late->status, -ESTALE, "a fenced take completed with %d",
                             late->status);
        } else {
                cr_assert(!wal_msg_is_immutable(m), "a refused take froze the message");
                cr_assert_eq(wal_msg_set_prop(m, "idx", "7"), 0);
                cr_assert_eq(atomic_load(&late->calls), 0);
        }
        wal_msg_unref(m);
        conf_done_free(late);
        w->ops->close(w);
        w2->ops->close(w2);
}

/* Messages handed over with append_take and still in flight when the wal
 * closes: each completion runs once (done or -ECANCELED), and the caller's
 * references stay valid after the backend let go of its own (ASan checks
 * the counts). */
Test(conformance, append_take_then_close_while_in_flight, .timeout = 60)
{
        enum { N = 256 };
        for (int round = 0; round < 5; round++) {
                char ch[64];
                conf_channel("takeclose", ch);
                struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
                wal_msg *ms[N];
                struct conf_done *d[N];
                int made = 0;
                for (; made < N; made++) {
                        ms[made] = conf_msg(made, "in flight %d", made);
                        d[made] = conf_done_new();
                        int r = walimpls_append_take(w, ms[made], conf_done_cb, d[made]);
                        if (r < 0) {
                                wal_msg_unref(ms[made]);
                                conf_done_free(d[made]);
                                break;
                        }
                }
                cr_assert_gt(made, 0);
                w->ops->close(w);
                for (int i = 0; i < made; i++) {
                        cr_assert_eq(atomic_load(&d[i]->calls), 1,
                                     "completion %d ran %d times by the end of close", i,
                                     atomic_load(&d[i]->calls));
                        cr_assert(d[i]->status == 0 || d[i]->status == -ECANCELED,
                                  "completion %d: %d", i, d[i]->status);
                        /* Still the caller's to read and release. */
                        size_t len = 0;
                        cr_assert_not_null(wal_msg_payload(ms[i], &len));
                        cr_assert_gt(len, 0);
                        wal_msg_unref(ms[i]);
                        conf_done_free(d[i]);
                }
        }
}

Test(conformance, interrupt_affects_one_scanner_only, .timeout = 30)
{
        char ch[64];
        conf_channel("intr", ch);
        struct walimpls_wal *w = open_ok(ch, 1, WAL_ACCESS_RW);
        struct walimpls_scanner *s1 = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        struct walimpls_scanner *s2 = read_ok(w, WAL_DELIVER_ALL, WAL_MSGID_NONE);
        /* Interrupt before anyone waits: sticky, and only for s1. */
        s1->ops->interrupt(s1);
        struct wal_msgid id[1];
        append_n(w, 0, 1, id);
        wal_msg *m = NULL;
        cr_assert_eq(conf_next(s1, 1000, &m, NULL), -ECANCELED);
        expect_ids(s2, id, 1);
        s1->ops->close(s1);
        s2->ops->close(s2);
        w->ops->close(w);
}
