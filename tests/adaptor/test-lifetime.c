/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/test-lifetime.c: Opener > WAL > Scanner lifetimes under
 * concurrency.  Close while 8 threads append and 4 scanners read, repeated,
 * closing the wal or the whole opener; every callback of an accepted append
 * runs exactly once; a thread blocked in next() returns promptly; calls
 * after close are refused; nothing hangs.  Meant to be run under ASan too.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "t-adaptor.h"
#include "t-helpers.h"
#include "utility/walu.h"

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

struct busy {
        wal *w;
        struct ta_counter c;
        atomic_int accepted;        /* appends that returned 0 */
        atomic_int refused_other;   /* returned neither 0 nor -ESHUTDOWN */
        atomic_int scan_bad;        /* scanner ended with something unexpected */
        atomic_int delivered;
        wal_scanner *scanners[4];
};

static void *appender(void *arg)
{
        struct busy *b = arg;
        wal_msg *m = ta_msg("payload", NULL);
        for (int i = 0;; i++) {
                int r = wal_append(b->w, m, ta_count_done, &b->c, NULL);
                if (r == 0) {
                        atomic_fetch_add(&b->accepted, 1);
                } else if (r == -ESHUTDOWN) {
                        break;
                } else {
                        atomic_fetch_add(&b->refused_other, 1);
                        break;
                }
                if (i % 64 == 0)
                        sched_yield();
        }
        wal_msg_unref(m);
        return NULL;
}

static void *scanner_thread(void *arg)
{
        void **a = arg;
        struct busy *b = a[0];
        wal_scanner *s = a[1];
        for (;;) {
                wal_msg *m = NULL;
                int r = wal_scanner_next(s, -1, &m, NULL);
                if (r == 0) {
                        atomic_fetch_add(&b->delivered, 1);
                        wal_msg_unref(m);
                        continue;
                }
                if (r != -ESHUTDOWN)
                        atomic_fetch_add(&b->scan_bad, 1);
                break;
        }
        return NULL;
}

static void close_while_busy(bool close_opener)
{
        const char *props[] = { "cache.max_bytes=4k", NULL };
        wal_opener *o = NULL;
        struct busy b = { 0 };
        cr_assert_eq(ta_opener(props, &o), 0);
        cr_assert_eq(wal_open(o, "busy", 1, WAL_ACCESS_RW, &b.w, NULL), 0);
        void *sargs[4][2];
        pthread_t ta[8], ts[4];
        for (int i = 0; i < 4; i++) {
                struct wal_deliver d = { .policy = i % 2 ? WAL_DELIVER_ALL : WAL_DELIVER_LATEST };
                cr_assert_eq(wal_read(b.w, &d, NULL, &b.scanners[i], NULL), 0);
                sargs[i][0] = &b;
                sargs[i][1] = b.scanners[i];
                pthread_create(&ts[i], NULL, scanner_thread, sargs[i]);
        }
        for (int i = 0; i < 8; i++)
                pthread_create(&ta[i], NULL, appender, &b);
        /* Close while busy: some appends done, more in flight (on a loaded
         * machine the first completion may take longer than the 30 ms). */
        sleep_ms(30);
        for (int i = 0; i < 10000 && atomic_load(&b.c.ok) == 0; i++)
                sleep_ms(1);
        uint64_t t0 = walu_monotonic_ns();
        if (close_opener)
                ta_opener_close(o);
        else
                wal_close(b.w);
        uint64_t close_ms = (walu_monotonic_ns() - t0) / 1000000u;
        for (int i = 0; i < 8; i++)
                pthread_join(ta[i], NULL);
        for (int i = 0; i < 4; i++)
                pthread_join(ts[i], NULL);

        /* Exactly once: every accepted append got one callback, by now. */
        cr_assert_eq(atomic_load(&b.c.calls), atomic_load(&b.accepted),
                     "%d callbacks for %d accepted appends", atomic_load(&b.c.calls),
                     atomic_load(&b.accepted));
        cr_assert_eq(atomic_load(&b.c.bad), 0);
        cr_assert_eq(atomic_load(&b.c.failed), 0);
        cr_assert_gt(atomic_load(&b.c.ok), 0);
        cr_assert_eq(atomic_load(&b.refused_other), 0);
        cr_assert_eq(atomic_load(&b.scan_bad), 0);
        cr_assert_lt(close_ms, 10000);

        for (int i = 0; i < 4; i++)
                wal_scanner_close(b.scanners[i]);
        if (close_opener) {
                /* The wal handle stays usable (refusing) until its owner
                 * closes it. */
                wal_msg *m = ta_msg("late", NULL);
                cr_assert_eq(wal_append(b.w, m, ta_count_done, &b.c, NULL), -ESHUTDOWN);
                wal_msg_unref(m);
                wal_close(b.w);
        } else {
                ta_opener_close(o);
        }
}

TestSuite(adaptor_lifetime, .timeout = 240);

Test(adaptor_lifetime, close_wal_while_busy_repeated)
{
        for (int i = 0; i < 8; i++)
                close_while_busy(false);
}

Test(adaptor_lifetime, close_opener_while_busy_repeated)
{
        for (int i = 0; i < 8; i++)
                close_while_busy(true);
}

static void *blocked_next(void *arg)
{
        wal_scanner *s = arg;
        wal_msg *m = NULL;
        return (void *)(intptr_t)wal_scanner_next(s, -1, &m, NULL);
}

Test(adaptor_lifetime, scanner_close_wakes_a_blocked_next)
{
        wal_opener *o = NULL;
        wal *w = NULL, *ro = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "blocked", 1, WAL_ACCESS_RW, &w, NULL), 0);
        cr_assert_eq(wal_open(o, "blocked", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        /* tailing (RW, cache) and catch-up (RO, backend) */
        wal *which[2] = { w, ro };
        for (int k = 0; k < 2; k++) {
                wal_scanner *s = NULL;
                struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
                cr_assert_eq(wal_read(which[k], &d, NULL, &s, NULL), 0);
                pthread_t th;
                pthread_create(&th, NULL, blocked_next, s);
                sleep_ms(50);
                uint64_t t0 = walu_monotonic_ns();
                wal_scanner_close(s);
                void *res;
                pthread_join(th, &res);
                cr_assert_eq((int)(intptr_t)res, -ESHUTDOWN);
                cr_assert_lt(walu_monotonic_ns() - t0, 2000000000ull);
        }
        /* And closing the wal ends a scanner blocked on it. */
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
        cr_assert_eq(wal_read(ro, &d, NULL, &s, NULL), 0);
        pthread_t th;
        pthread_create(&th, NULL, blocked_next, s);
        sleep_ms(50);
        wal_close(ro);
        void *res;
        pthread_join(th, &res);
        cr_assert_eq((int)(intptr_t)res, -ESHUTDOWN);
        wal_scanner_close(s);
        wal_close(w);
        ta_opener_close(o);
}

struct chain {
        wal *w;
        atomic_int n;
        atomic_int bad;
};

static void chain_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct chain *c = arg;
        (void)msg;
        (void)err;
        if (status != 0) {
                atomic_fetch_add(&c->bad, 1);
                atomic_fetch_add(&c->n, 1000000);
                return;
        }
        if (atomic_fetch_add(&c->n, 1) + 1 < 100) {
                wal_msg *m = ta_msg("next", NULL);
                if (wal_append(c->w, m, chain_done, c, NULL) < 0)
                        atomic_fetch_add(&c->bad, 1);
                wal_msg_unref(m);
        }
}

Test(adaptor_lifetime, callbacks_may_append)
{
        wal_opener *o = NULL;
        struct chain c = { 0 };
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "chain", 1, WAL_ACCESS_RW, &c.w, NULL), 0);
        wal_msg *m = ta_msg("first", NULL);
        cr_assert_eq(wal_append(c.w, m, chain_done, &c, NULL), 0);
        wal_msg_unref(m);
        for (int i = 0; i < 5000 && atomic_load(&c.n) < 100; i++)
                sleep_ms(1);
        cr_assert_eq(atomic_load(&c.n), 100);
        cr_assert_eq(atomic_load(&c.bad), 0);
        wal_close(c.w);
        ta_opener_close(o);
}

/*
 * A callback that makes a blocking call on its own wal (wal_append_wait(),
 * wal_txn_begin(): both wait for a completion, and completions run one at
 * a time on the thread running this callback) is refused with -EDEADLK and
 * a message saying why.  wal-api.h forbids it; it used to hang for ever,
 * and the wal's close with it.
 */
struct blocking_in_cb {
        wal *w;
        atomic_int ran;
        int wait_r, begin_r;
        char wait_msg[256];
};

static void blocking_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct blocking_in_cb *b = arg;
        (void)status;
        (void)msg;
        (void)err;
        wal_error *e = NULL;
        wal_msg *m = ta_msg("from the callback", NULL);
        b->wait_r = wal_append_wait(b->w, m, NULL, &e);
        snprintf(b->wait_msg, sizeof(b->wait_msg), "%s", wal_error_message(e));
        wal_error_free(e);
        wal_msg_unref(m);
        wal_txn *t = NULL;
        b->begin_r = wal_txn_begin(b->w, NULL, 0, &t, NULL);
        if (b->begin_r == 0)
                wal_txn_rollback(t, NULL);
        atomic_store(&b->ran, 1);
}

Test(adaptor_lifetime, blocking_calls_in_a_callback_are_refused)
{
        wal_opener *o = NULL;
        struct blocking_in_cb b = { 0 };
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "blocking-cb", 1, WAL_ACCESS_RW, &b.w, NULL), 0);
        wal_msg *m = ta_msg("first", NULL);
        cr_assert_eq(wal_append(b.w, m, blocking_done, &b, NULL), 0);
        wal_msg_unref(m);
        for (int i = 0; i < 5000 && !atomic_load(&b.ran); i++)
                sleep_ms(1);
        cr_assert(atomic_load(&b.ran), "the callback is still blocked after 5 s");
        cr_expect_eq(b.wait_r, -EDEADLK, "wal_append_wait in a callback: %d", b.wait_r);
        cr_expect(strstr(b.wait_msg, "callback"), "%s", b.wait_msg);
        cr_expect_eq(b.begin_r, -EDEADLK, "wal_txn_begin in a callback: %d", b.begin_r);
        /* The wal still works, from a thread of its own. */
        cr_expect_eq(ta_append(b.w, "after", NULL, NULL), 0);
        wal_close(b.w);
        ta_opener_close(o);
}

static void *waiter_thread(void *arg)
{
        wal *w = arg;
        int last = 0;
        for (;;) {
                last = ta_append(w, "w", NULL, NULL);
                if (last != 0)
                        break;
        }
        return (void *)(intptr_t)last;
}

Test(adaptor_lifetime, close_ends_blocking_appends)
{
        for (int round = 0; round < 5; round++) {
                wal_opener *o = NULL;
                wal *w = NULL;
                cr_assert_eq(ta_opener(NULL, &o), 0);
                cr_assert_eq(wal_open(o, "waits", 1, WAL_ACCESS_RW, &w, NULL), 0);
                pthread_t th[4];
                for (int i = 0; i < 4; i++)
                        pthread_create(&th[i], NULL, waiter_thread, w);
                sleep_ms(20);
                /* The parent closes the wal under the waiting threads; the
                 * handle itself stays valid until they are done with it. */
                ta_opener_close(o);
                for (int i = 0; i < 4; i++) {
                        void *res;
                        pthread_join(th[i], &res);
                        int r = (int)(intptr_t)res;
                        cr_assert(r == -ESHUTDOWN || r == -ECANCELED, "ended with %d", r);
                }
                wal_close(w);
        }
}

Test(adaptor_lifetime, children_closed_by_parent_then_released)
{
        wal_opener *o = NULL;
        wal *w = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "kids", 1, WAL_ACCESS_RW, &w, NULL), 0);
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_ALL };
        cr_assert_eq(wal_read(w, &d, NULL, &s, NULL), 0);
        wal_txn *t = NULL;
        cr_assert_eq(wal_txn_begin(w, NULL, 0, &t, NULL), 0);
        struct ta_counter c = { 0 };
        for (int i = 0; i < 100; i++) {
                wal_msg *m = ta_msg("x", NULL);
                cr_assert_eq(wal_append(w, m, ta_count_done, &c, NULL), 0);
                wal_msg_unref(m);
        }
        ta_opener_close(o);
        cr_assert_eq(atomic_load(&c.calls), 100);
        cr_assert_eq(atomic_load(&c.ok) + atomic_load(&c.cancelled), 100);
        wal_msg *m = ta_msg("x", NULL);
        cr_assert_eq(wal_txn_append(t, m, ta_count_done, &c, NULL), -ESHUTDOWN);
        wal_msg_unref(m);
        cr_assert_eq(wal_txn_commit(t, NULL, NULL), -ESHUTDOWN);
        wal_msg *got = NULL;
        cr_assert_eq(wal_scanner_next(s, -1, &got, NULL), -ESHUTDOWN);
        wal_scanner_close(s);
        wal_close(w);
        cr_assert_eq(atomic_load(&c.calls), 100);
}

/*
 * Blocking appends racing closers.  Four threads call wal_append_wait() in
 * a loop (on local each call also runs the backend's flush, which must never
 * overlap the backend's close; memory, redis and kafka have no flush and
 * take the plain wait) while the wal is closed under them: by its owner
 * alone (even rounds), or by its owner and its parent opener at the same
 * time (odd rounds).  Nothing may hang, every call ends with 0, -ESHUTDOWN
 * or -ECANCELED, and every record acknowledged with 0 must be in the log
 * exactly once, with the ID it was acknowledged with.  The log is read back
 * through the same opener (even rounds), or, when the opener was closed
 * too, through a new opener on the same directory (local only: the other
 * backends' storage ends with their opener).
 */

#define RACE_THREADS 4
#define RACE_MAX 100000

struct racer {
        wal *w;
        int k;                              /* thread number, in the payload */
        int acked;                          /* appends 0..acked-1 returned 0 */
        int last;                           /* what the first failure returned */
        struct wal_msgid *ids;              /* ID of each acknowledged append */
        atomic_int *total;                  /* acknowledgements of all threads */
};

static void *racing_appender(void *arg)
{
        struct racer *rc = arg;
        for (int i = 0; i < RACE_MAX; i++) {
                char text[32];
                snprintf(text, sizeof(text), "t%d-%d", rc->k, i);
                wal_msg *written = NULL;
                int r = ta_append(rc->w, text, NULL, &written);
                if (r != 0) {
                        rc->last = r;
                        break;
                }
                rc->ids[i] = wal_msg_id(written);
                wal_msg_unref(written);
                rc->acked = i + 1;
                atomic_fetch_add(rc->total, 1);
        }
        return NULL;
}

static void *close_wal_thread(void *arg)
{
        wal_close(arg);
        return NULL;
}

static void *close_opener_thread(void *arg)
{
        ta_opener_close(arg);
        return NULL;
}

/* Read every data message of channel "racing" on @o and check it against
 * what @rc acknowledged. */
static void check_log(wal_opener *o, struct racer *rc)
{
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "racing", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        struct wal_deliver all = { .policy = WAL_DELIVER_ALL };
        struct wal_filter data = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };
        wal_scanner *s = NULL;
        cr_assert_eq(wal_read(ro, &all, &data, &s, NULL), 0);
        int *seen[RACE_THREADS];
        for (int k = 0; k < RACE_THREADS; k++)
                seen[k] = calloc((size_t)rc[k].acked + 1, sizeof(int));
        for (;;) {
                wal_msg *m = NULL;
                int r = wal_scanner_next(s, 500, &m, NULL);
                if (r == -ETIMEDOUT)
                        break;
                cr_assert_eq(r, 0, "reading back: %d", r);
                size_t len = 0;
                const char *p = wal_msg_payload(m, &len);
                char text[32] = { 0 };
                cr_assert_lt(len, sizeof(text));
                memcpy(text, p, len);
                int k = -1, i = -1;
                cr_assert_eq(sscanf(text, "t%d-%d", &k, &i), 2, "payload \"%s\"", text);
                cr_assert(k >= 0 && k < RACE_THREADS && i >= 0);
                /* Only acknowledged appends and each thread's last
                 * (failed, possibly written) one can be there. */
                cr_assert_leq(i, rc[k].acked, "%s was never appended", text);
                seen[k][i]++;
                cr_assert_eq(seen[k][i], 1, "%s read twice", text);
                if (i < rc[k].acked)
                        cr_assert(wal_msgid_eq(wal_msg_id(m), rc[k].ids[i]),
                                  "%s read back with another ID than acknowledged", text);
                wal_msg_unref(m);
        }
        for (int k = 0; k < RACE_THREADS; k++) {
                for (int i = 0; i < rc[k].acked; i++)
                        cr_assert_eq(seen[k][i], 1, "acknowledged t%d-%d lost", k, i);
                free(seen[k]);
        }
        wal_scanner_close(s);
        wal_close(ro);
}

Test(adaptor_lifetime, blocking_appends_race_closers)
{
        bool local = strcmp(ta_backend(), "local") == 0;
        for (int round = 0; round < 12; round++) {
                bool both = round % 2 == 1;
                /* On local the directory is ours, so the log outlives the
                 * opener and the fixture's teardown. */
                char *dir = NULL;
                char dirprop[4200];
                const char *props[] = { dirprop, NULL };
                if (local) {
                        cr_assert_eq(t_tmpdir_new("wal-race", &dir), 0);
                        snprintf(dirprop, sizeof(dirprop), "local.dir=%s", dir);
                }
                wal_opener *o = NULL;
                wal *w = NULL;
                cr_assert_eq(ta_opener(local ? props : NULL, &o), 0);
                cr_assert_eq(wal_open(o, "racing", 1, WAL_ACCESS_RW, &w, NULL), 0);
                /* Keeps the handle valid for a call that starts after the
                 * close returned (it gets -ESHUTDOWN). */
                wal_scanner *hold = NULL;
                struct wal_deliver latest = { .policy = WAL_DELIVER_LATEST };
                cr_assert_eq(wal_read(w, &latest, NULL, &hold, NULL), 0);

                atomic_int total = 0;
                struct racer rc[RACE_THREADS];
                pthread_t th[RACE_THREADS];
                for (int k = 0; k < RACE_THREADS; k++) {
                        rc[k] = (struct racer){ .w = w, .k = k, .total = &total,
                                                .ids = calloc(RACE_MAX, sizeof(*rc[k].ids)) };
                        pthread_create(&th[k], NULL, racing_appender, &rc[k]);
                }
                for (int i = 0; i < 10000 && atomic_load(&total) < 16; i++)
                        sleep_ms(1);
                sleep_ms(round % 4);
                uint64_t t0 = walu_monotonic_ns();
                pthread_t c1, c2;
                pthread_create(&c1, NULL, close_wal_thread, w);
                if (both)
                        pthread_create(&c2, NULL, close_opener_thread, o);
                pthread_join(c1, NULL);
                if (both)
                        pthread_join(c2, NULL);
                for (int k = 0; k < RACE_THREADS; k++)
                        pthread_join(th[k], NULL);
                uint64_t close_ms = (walu_monotonic_ns() - t0) / 1000000u;
                cr_assert_lt(close_ms, 10000, "closing took %llu ms",
                             (unsigned long long)close_ms);
                int acked = 0;
                for (int k = 0; k < RACE_THREADS; k++) {
                        cr_assert(rc[k].last == -ESHUTDOWN || rc[k].last == -ECANCELED,
                                  "thread %d ended with %d", k, rc[k].last);
                        acked += rc[k].acked;
                }
                cr_assert_geq(acked, 16);
                wal_scanner_close(hold);

                if (!both) {
                        check_log(o, rc);
                        ta_opener_close(o);
                } else if (local) {
                        wal_opener *o2 = NULL;
                        cr_assert_eq(ta_opener(props, &o2), 0);
                        check_log(o2, rc);
                        ta_opener_close(o2);
                }
                for (int k = 0; k < RACE_THREADS; k++)
                        free(rc[k].ids);
                if (dir) {
                        t_rm_rf(dir);
                        free(dir);
                }
        }
}

/*
 * Blocking and asynchronous appends mixed on one wal: the outcome of a
 * blocking append may be run by its own caller (when it heads the
 * completion queue) while the asynchronous appends queued behind it stay
 * with the dispatcher.  Every callback still runs exactly once, every
 * blocking append returns 0 with its message, nothing is run twice (ASan).
 */
struct mixed {
        wal *w;
        atomic_int bad;
        atomic_int stop;
        atomic_int accepted;
        struct ta_counter c;
};

static void *mixed_waiter(void *arg)
{
        struct mixed *mx = arg;
        for (int i = 0; i < 300; i++) {
                wal_msg *got = NULL;
                if (ta_append(mx->w, "sync", NULL, &got) != 0 || !got)
                        atomic_fetch_add(&mx->bad, 1);
                wal_msg_unref(got);
        }
        return NULL;
}

static void *mixed_async(void *arg)
{
        struct mixed *mx = arg;
        wal_msg *m = ta_msg("async", NULL);
        while (!atomic_load(&mx->stop)) {
                if (wal_append(mx->w, m, ta_count_done, &mx->c, NULL) == 0)
                        atomic_fetch_add(&mx->accepted, 1);
                else
                        atomic_fetch_add(&mx->bad, 1);
                if (atomic_load(&mx->accepted) - atomic_load(&mx->c.calls) > 64)
                        sched_yield();
        }
        wal_msg_unref(m);
        return NULL;
}

Test(adaptor_lifetime, blocking_and_async_appends_mixed)
{
        const char *props[] = { "timetick.interval=1ms", NULL };
        wal_opener *o = NULL;
        struct mixed mx = { 0 };
        cr_assert_eq(ta_opener(props, &o), 0);
        cr_assert_eq(wal_open(o, "mixed", 1, WAL_ACCESS_RW, &mx.w, NULL), 0);
        pthread_t tw[3], ta[2];
        for (int i = 0; i < 2; i++)
                pthread_create(&ta[i], NULL, mixed_async, &mx);
        for (int i = 0; i < 3; i++)
                pthread_create(&tw[i], NULL, mixed_waiter, &mx);
        for (int i = 0; i < 3; i++)
                pthread_join(tw[i], NULL);
        atomic_store(&mx.stop, 1);
        for (int i = 0; i < 2; i++)
                pthread_join(ta[i], NULL);
        cr_assert_eq(ta_wait_calls(&mx.c, atomic_load(&mx.accepted), 30000), 0);
        wal_close(mx.w);
        cr_assert_eq(atomic_load(&mx.bad), 0);
        cr_assert_eq(atomic_load(&mx.c.calls), atomic_load(&mx.accepted));
        cr_assert_eq(atomic_load(&mx.c.ok), atomic_load(&mx.accepted));
        cr_assert_eq(atomic_load(&mx.c.bad), 0);
        ta_opener_close(o);
}

/* Messages handed over with wal_append_take() and still in flight when the
 * wal closes (completions on the backend's thread): every callback runs
 * once, with the message or -ECANCELED, and each message is released once
 * (ASan counts). */
Test(adaptor_lifetime, taken_messages_in_flight_at_close)
{
        static const char *const props[] = { "memory.completion=thread", NULL };
        for (int round = 0; round < 10; round++) {
                wal_opener *o = NULL;
                wal *w = NULL;
                cr_assert_eq(ta_opener(props, &o), 0);
                cr_assert_eq(wal_open(o, "take-close", 1, WAL_ACCESS_RW, &w, NULL), 0);
                struct ta_counter c = { 0 };
                int accepted = 0;
                for (int i = 0; i < 2000; i++) {
                        wal_msg *m = ta_msg("in flight", NULL);
                        if (wal_append_take(w, m, ta_count_done, &c, NULL) < 0) {
                                wal_msg_unref(m);
                                break;
                        }
                        accepted++;
                }
                if (round % 2)
                        wal_close(w);
                else
                        ta_opener_close(o);
                cr_assert_eq(atomic_load(&c.calls), accepted,
                             "%d callbacks for %d appends after close",
                             atomic_load(&c.calls), accepted);
                cr_assert_eq(atomic_load(&c.bad), 0);
                cr_assert_eq(atomic_load(&c.ok) + atomic_load(&c.cancelled), accepted);
                if (round % 2)
                        ta_opener_close(o);
                else
                        wal_close(w);
        }
}

/* With no scanner open, completions that came inline are drained by the
 * wal's dispatcher (adaptor/wal.c); a close right after the appends still
 * delivers every one of them: each callback once, with its message. */
Test(adaptor_lifetime, close_right_after_appends_left_to_the_dispatcher)
{
        for (int round = 0; round < 20; round++) {
                wal_opener *o = NULL;
                wal *w = NULL;
                cr_assert_eq(ta_opener(NULL, &o), 0);
                cr_assert_eq(wal_open(o, "left", 1, WAL_ACCESS_RW, &w, NULL), 0);
                struct ta_counter c = { 0 };
                for (int i = 0; i < 1000; i++) {
                        wal_msg *m = ta_msg("left to the dispatcher", NULL);
                        cr_assert_eq(wal_append_take(w, m, ta_count_done, &c, NULL), 0);
                }
                wal_close(w);
                cr_assert_eq(atomic_load(&c.calls), 1000, "%d callbacks after close",
                             atomic_load(&c.calls));
                cr_assert_eq(atomic_load(&c.bad), 0);
                /* The memory backend completed them all inline (its
                 * default): none may end cancelled. */
                const char *mc = getenv("WAL_TEST_MEMORY_COMPLETION");
                if (strcmp(ta_backend(), "memory") == 0 && !(mc && *mc))
                        cr_assert_eq(atomic_load(&c.ok), 1000);
                ta_opener_close(o);
        }
}
