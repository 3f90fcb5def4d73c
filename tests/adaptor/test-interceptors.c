/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/test-interceptors.c: the interceptor chain.  User
 * interceptors (on the opener and at open) in order, with done/ready/close
 * hooks and refusals; duplicate names; the time tick interceptor under
 * concurrent appenders (ticks follow IDs, term and last-confirmed stamped);
 * the first tick of a new term and fencing of the old one; the retry
 * interceptor against a test backend ("flaky", registered at run time) that
 * wraps the memory backend and fails some appends, synchronously
 * (-EAGAIN) or in the completion (-ETIMEDOUT, retriable) or fatally (-EIO).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wal/wal-registry.h>
#include "t-adaptor.h"
#include "t-flaky.h"
#include "utility/walu.h"

/* ---- User interceptors ---- */

struct probe {
        const char *prop;          /* property this interceptor adds */
        const char *require;       /* property that must already be there */
        atomic_int appends, dones, readies, closes, missing;
        pthread_mutex_t lock;
        char order[256];           /* names of done hooks, in call order */
};

static struct probe *shared_order;

static int probe_do_append(void *arg, wal *w, wal_msg *msg, wal_append_next *next)
{
        struct probe *p = arg;
        (void)w;
        atomic_fetch_add(&p->appends, 1);
        if (p->require && !wal_msg_prop(msg, p->require))
                atomic_fetch_add(&p->missing, 1);
        if (strcmp(ta_text(msg), "deny") == 0)
                return -EPERM;
        wal_msg_set_prop(msg, p->prop, "1");
        return wal_append_next_call(next, msg);
}

static void probe_done(void *arg, wal *w, const struct wal_append_result *res)
{
        struct probe *p = arg;
        (void)w;
        if (res->status == 0 && wal_msg_is_immutable(res->msg))
                atomic_fetch_add(&p->dones, 1);
        pthread_mutex_lock(&shared_order->lock);
        strncat(shared_order->order, p->prop, sizeof(shared_order->order) -
                strlen(shared_order->order) - 1);
        pthread_mutex_unlock(&shared_order->lock);
}

static int probe_ready(void *arg, wal *w)
{
        struct probe *p = arg;
        atomic_fetch_add(&p->readies, 1);
        return wal_channel(w) && strcmp(wal_channel(w), "not-ready") == 0 ? -EAGAIN : 0;
}

static void probe_close(void *arg, wal *w)
{
        struct probe *p = arg;
        (void)w;
        atomic_fetch_add(&p->closes, 1);
}

Test(adaptor_interceptors, user_chain_order_and_hooks, .timeout = 60)
{
        struct probe a = { .prop = "A" }, b = { .prop = "B", .require = "A" };
        pthread_mutex_init(&a.lock, NULL);
        shared_order = &a;
        wal_opener *o = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        struct wal_interceptor ia = { .name = "a", .arg = &a, .do_append = probe_do_append,
                                      .done = probe_done, .ready = probe_ready,
                                      .close = probe_close };
        cr_assert_eq(wal_opener_add_interceptor(o, &ia, NULL), 0);
        cr_assert_eq(wal_opener_add_interceptor(o, &ia, NULL), -EEXIST);
        struct wal_interceptor ib = ia;
        ib.name = "b";
        ib.arg = &b;
        struct wal_open_opts opts = { .channel = "ic", .term = 1, .access = WAL_ACCESS_RW,
                                      .interceptors = &ib, .n_interceptors = 1 };
        wal *w = NULL;
        cr_assert_eq(wal_open_ex(o, &opts, &w, NULL), 0);
        cr_assert_eq(atomic_load(&a.readies), 1);
        cr_assert_eq(atomic_load(&b.readies), 1);

        wal_msg *out = NULL;
        cr_assert_eq(ta_append(w, "one", NULL, &out), 0);
        cr_assert_str_eq(wal_msg_prop(out, "A"), "1");
        cr_assert_str_eq(wal_msg_prop(out, "B"), "1");
        wal_msg_unref(out);
        /* done hooks run innermost first */
        cr_assert_str_eq(a.order, "BA");

        struct ta_counter c = { 0 };
        wal_msg *m = ta_msg("deny", NULL);
        cr_assert_eq(wal_append(w, m, ta_count_done, &c, NULL), -EPERM);
        wal_msg_unref(m);
        cr_assert_eq(ta_append(w, "two", NULL, NULL), 0);
        cr_assert_eq(atomic_load(&c.calls), 0, "a refused append's callback ran");
        cr_assert_eq(atomic_load(&b.missing), 0);
        cr_assert_eq(atomic_load(&a.dones), 2);
        cr_assert_eq(atomic_load(&b.dones), 2);

        /* Built-in names are taken; so is a name twice in one open. */
        struct wal_interceptor clash = ia;
        clash.name = "retry";
        opts.channel = "ic2";
        opts.interceptors = &clash;
        wal *w2 = NULL;
        cr_assert_eq(wal_open_ex(o, &opts, &w2, NULL), -EEXIST);
        struct wal_interceptor two[2] = { ib, ib };
        opts.interceptors = two;
        opts.n_interceptors = 2;
        cr_assert_eq(wal_open_ex(o, &opts, &w2, NULL), -EEXIST);
        /* A ready hook that fails fails the open. */
        cr_assert_eq(wal_open(o, "not-ready", 1, WAL_ACCESS_RW, &w2, NULL), -EAGAIN);
        cr_assert_null(w2);

        wal_close(w);
        cr_assert_eq(atomic_load(&a.closes), 1); /* not for the failed "not-ready" open */
        cr_assert_eq(atomic_load(&b.closes), 1);
        ta_opener_close(o);
        pthread_mutex_destroy(&a.lock);
}

static int refuse_ready(void *arg, wal *w)
{
        (void)arg;
        (void)w;
        return -EACCES;
}

/* An interceptor whose ready hook succeeded gets its close hook exactly
 * once, also when a later interceptor's ready fails the open: a ready that
 * sets up per-wal state can count on close to release it.  (It used to be
 * skipped for every wal whose open failed, found trying the API as a new
 * user would.) */
Test(adaptor_interceptors, close_follows_every_ready_that_succeeded, .timeout = 60)
{
        struct probe a = { .prop = "A" };
        pthread_mutex_init(&a.lock, NULL);
        shared_order = &a;
        wal_opener *o = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        struct wal_interceptor ia = { .name = "a", .arg = &a, .do_append = probe_do_append,
                                      .done = probe_done, .ready = probe_ready,
                                      .close = probe_close };
        cr_assert_eq(wal_opener_add_interceptor(o, &ia, NULL), 0);
        /* No ready hook: its close pairs with opens that succeeded only
         * (wal-api.h), so none for the failed open below. */
        struct probe n = { .prop = "N" };
        pthread_mutex_init(&n.lock, NULL);
        struct wal_interceptor in = { .name = "n", .arg = &n, .do_append = probe_do_append,
                                      .close = probe_close };
        cr_assert_eq(wal_opener_add_interceptor(o, &in, NULL), 0);
        struct wal_interceptor refuse = { .name = "refuse", .do_append = probe_do_append,
                                          .ready = refuse_ready, .close = probe_close };
        struct probe r = { .prop = "R" };
        refuse.arg = &r;
        struct wal_open_opts opts = { .channel = "half-ready", .term = 1,
                                      .access = WAL_ACCESS_RW, .interceptors = &refuse,
                                      .n_interceptors = 1 };
        wal *w = NULL;
        wal_error *e = NULL;
        cr_assert_eq(wal_open_ex(o, &opts, &w, &e), -EACCES);
        cr_expect(strstr(wal_error_message(e), "\"refuse\""), "%s", wal_error_message(e));
        wal_error_free(e);
        cr_assert_null(w);
        cr_expect_eq(atomic_load(&a.readies), 1);
        cr_expect_eq(atomic_load(&a.closes), 1, "a's ready ran, its close did not");
        cr_expect_eq(atomic_load(&r.closes), 0, "close after a ready that failed");
        cr_expect_eq(atomic_load(&n.closes), 0, "close without a ready, for a failed open");

        /* A wal that opens and closes: one of each, as before. */
        cr_assert_eq(wal_open(o, "fine", 1, WAL_ACCESS_RW, &w, NULL), 0);
        wal_close(w);
        cr_expect_eq(atomic_load(&a.readies), 2);
        cr_expect_eq(atomic_load(&a.closes), 2);
        cr_expect_eq(atomic_load(&n.closes), 1, "no close without a ready for an open wal");
        ta_opener_close(o);
        pthread_mutex_destroy(&a.lock);
        pthread_mutex_destroy(&n.lock);
}

/* ---- Time ticks ---- */

struct stamp {
        struct wal_msgid id;
        uint64_t tick;
        int64_t term;
        struct wal_msgid lc;
};

struct stamps {
        pthread_mutex_t lock;
        struct stamp *v;
        size_t n;
        wal *w;
        struct ta_counter c;
};

static void stamp_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct stamps *st = arg;
        if (status == 0) {
                pthread_mutex_lock(&st->lock);
                st->v[st->n++] = (struct stamp){ wal_msg_id(msg), wal_msg_time_tick(msg),
                                                 wal_msg_term(msg),
                                                 wal_msg_last_confirmed(msg) };
                pthread_mutex_unlock(&st->lock);
        }
        ta_count_done(&st->c, status, msg, err);
}

static void *stamp_writer(void *arg)
{
        struct stamps *st = arg;
        for (int i = 0; i < 2000; i++) {
                wal_msg *m = ta_msg("t", NULL);
                wal_append(st->w, m, stamp_done, st, NULL);
                wal_msg_unref(m);
        }
        return NULL;
}

static int cmp_stamp(const void *a, const void *b)
{
        return wal_msgid_cmp(((const struct stamp *)a)->id, ((const struct stamp *)b)->id);
}

Test(adaptor_interceptors, ticks_follow_ids_under_concurrency, .timeout = 120)
{
        wal_opener *o = NULL;
        struct stamps st = { .v = calloc(8000, sizeof(struct stamp)) };
        pthread_mutex_init(&st.lock, NULL);
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "ticks", 7, WAL_ACCESS_RW, &st.w, NULL), 0);
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
                pthread_create(&th[i], NULL, stamp_writer, &st);
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        cr_assert_eq(ta_wait_calls(&st.c, 8000, 20000), 0);
        cr_assert_eq(atomic_load(&st.c.ok), 8000);
        /* callbacks ran in ID order */
        for (size_t i = 1; i < st.n; i++)
                cr_assert_lt(wal_msgid_cmp(st.v[i - 1].id, st.v[i].id), 0, "callback order at %zu", i);
        qsort(st.v, st.n, sizeof(*st.v), cmp_stamp);
        uint64_t now_ms = walu_realtime_ms();
        for (size_t i = 0; i < st.n; i++) {
                cr_assert_eq(st.v[i].term, 7);
                cr_assert_lt(wal_msgid_cmp(st.v[i].lc, st.v[i].id), 0);
                if (i > 0) {
                        cr_assert_lt(st.v[i - 1].tick, st.v[i].tick, "tick order at %zu", i);
                        cr_assert_geq(wal_msgid_cmp(st.v[i].lc, st.v[i - 1].lc), 0);
                }
                uint64_t ms = st.v[i].tick >> 18;
                cr_assert(ms + 60000 > now_ms && ms < now_ms + 60000, "physical part off");
        }
        wal_close(st.w);
        ta_opener_close(o);
        free(st.v);
}

/* The drain handshake (adaptor/wal.c, drain()): a drainer leaves without
 * going back to the pending list when no completion was counted since its
 * last pop.  A completion lost in that handshake would stay undrained until
 * some later completion came by; so each round here appends a few records
 * from two threads at once and then appends nothing until every callback of
 * the round arrived: a lost drain shows as a round that never finishes. */
struct drain_race {
        wal *w;
        struct ta_counter c;
        pthread_barrier_t start;
        atomic_int round_target;
        int rounds;
        pthread_mutex_t lock;
        struct wal_msgid last;
        atomic_int out_of_order;
        atomic_int stuck;
};

static void drain_race_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct drain_race *dr = arg;
        if (status == 0) {
                /* callbacks run one at a time, in ID order */
                struct wal_msgid id = wal_msg_id(msg);
                if (pthread_mutex_trylock(&dr->lock) != 0)
                        atomic_fetch_add(&dr->out_of_order, 1);
                else {
                        if (wal_msgid_cmp(dr->last, id) >= 0)
                                atomic_fetch_add(&dr->out_of_order, 1);
                        dr->last = id;
                        pthread_mutex_unlock(&dr->lock);
                }
        }
        ta_count_done(&dr->c, status, msg, err);
}

static void *drain_race_writer(void *arg)
{
        struct drain_race *dr = arg;
        for (int r = 0; r < dr->rounds; r++) {
                pthread_barrier_wait(&dr->start);
                int n = 1 + r % 2;
                for (int i = 0; i < n; i++) {
                        wal_msg *m = ta_msg("d", NULL);
                        wal_append(dr->w, m, drain_race_done, dr, NULL);
                        wal_msg_unref(m);
                }
                pthread_barrier_wait(&dr->start);
                /* Everyone appended: the round's callbacks must all come
                 * with no further append to push them out. */
                if (ta_wait_calls(&dr->c, atomic_load(&dr->round_target) + 2 * n, 5000) < 0)
                        atomic_fetch_add(&dr->stuck, 1);
                pthread_barrier_wait(&dr->start);
                if (atomic_load(&dr->stuck))
                        break;
                if (pthread_barrier_wait(&dr->start) == PTHREAD_BARRIER_SERIAL_THREAD)
                        atomic_fetch_add(&dr->round_target, 2 * n);
        }
        return NULL;
}

Test(adaptor_interceptors, racing_drains_leave_no_completion_behind, .timeout = 120)
{
        wal_opener *o = NULL;
        struct drain_race dr = { .rounds = strcmp(ta_backend(), "memory") == 0 ? 3000 : 200,
                                 .last = { 0, 0 } };
        pthread_mutex_init(&dr.lock, NULL);
        pthread_barrier_init(&dr.start, NULL, 2);
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "drains", 1, WAL_ACCESS_RW, &dr.w, NULL), 0);
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
                pthread_create(&th[i], NULL, drain_race_writer, &dr);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&dr.stuck), 0, "a round's completions were left undrained "
                     "(%d of %d callbacks)", atomic_load(&dr.c.calls),
                     atomic_load(&dr.round_target));
        cr_assert_eq(atomic_load(&dr.c.ok), atomic_load(&dr.c.calls));
        cr_assert_eq(atomic_load(&dr.c.calls), atomic_load(&dr.round_target));
        cr_assert_eq(atomic_load(&dr.out_of_order), 0);
        wal_close(dr.w);
        ta_opener_close(o);
        pthread_barrier_destroy(&dr.start);
        pthread_mutex_destroy(&dr.lock);
}

/* The pending queue (adaptor/wal.c): an append is linked after its backend
 * append returned, so its completion can be counted before it is in the
 * queue, while a drainer that already read the count works through a long
 * run.  The appender then finds that drainer in place and leaves the drain
 * to it: the drainer must come back for the append linked meanwhile (the
 * appender counts its link), or the append stays undelivered and its
 * callback never runs until something else drains.  The flaky backend
 * holds back the completions of a run of appends, then, inside the last
 * append, completes them all and the last one on a thread of its own, in
 * one batch, and returns only once a reader saw the run's first message
 * (so the drainer has popped the whole run and is pushing it to the cache). */
enum { EARLY_RUN = 20000 };

struct early {
        wal_scanner *s;
        atomic_int seen;            /* data messages read */
        atomic_int bad_order;
        atomic_bool stop;
};

static struct early *early_cur;

static void *early_reader(void *arg)
{
        struct early *e = arg;
        int n = 0;
        while (n < EARLY_RUN + 1 && !atomic_load(&e->stop)) {
                wal_msg *m = NULL;
                int r = wal_scanner_next(e->s, 0, &m, NULL);
                if (r < 0) {
                        sched_yield();
                        continue;
                }
                if (wal_msg_type(m) == WAL_MSG_DATA) {
                        char want[16];
                        if (n < EARLY_RUN)
                                snprintf(want, sizeof(want), "h%d", n);
                        else
                                snprintf(want, sizeof(want), "last");
                        size_t len = 0;
                        const char *p = wal_msg_payload(m, &len);
                        if (len != strlen(want) || memcmp(p, want, len) != 0)
                                atomic_fetch_add(&e->bad_order, 1);
                        atomic_store(&e->seen, ++n);
                }
                wal_msg_unref(m);
        }
        return NULL;
}

/* Inside the last append: wait until the run's first message was read. */
static void early_wait_first(void)
{
        for (int i = 0; i < 200000 && atomic_load(&early_cur->seen) == 0; i++) {
                struct timespec ts = { 0, 50000 };
                nanosleep(&ts, NULL);
        }
}

Test(adaptor_interceptors, completion_counted_before_its_append_is_linked_is_drained,
     .timeout = 120)
{
        /* No periodic tick: its append would drain the lost one too. */
        const char *props[] = { "timetick.interval=60s", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(props);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "early", 1, WAL_ACCESS_RW, &w, NULL), 0);
        struct early e = { 0 };
        struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
        cr_assert_eq(wal_read(w, &d, NULL, &e.s, NULL), 0);
        pthread_t rd;
        pthread_create(&rd, NULL, early_reader, &e);
        atomic_store(&flaky_mode, FLAKY_HOLD);
        for (int i = 0; i < EARLY_RUN; i++) {
                char t[16];
                snprintf(t, sizeof(t), "h%d", i);
                wal_msg *m = ta_msg(t, NULL);
                cr_assert_eq(wal_append(w, m, NULL, NULL, NULL), 0);
                wal_msg_unref(m);
        }
        cr_assert_eq(atomic_load(&e.seen), 0, "a held completion was delivered");
        early_cur = &e;
        flaky_release_wait = early_wait_first;
        atomic_store(&flaky_mode, FLAKY_RELEASE);
        struct ta_counter c = { 0 };
        wal_msg *m = ta_msg("last", NULL);
        cr_assert_eq(wal_append(w, m, ta_count_done, &c, NULL), 0);
        wal_msg_unref(m);
        atomic_store(&flaky_mode, FLAKY_PASS);
        flaky_release_wait = NULL;
        cr_assert_gt(atomic_load(&e.seen), 0);
        int r = ta_wait_calls(&c, 1, 5000);
        for (int i = 0; i < 5000 && atomic_load(&e.seen) < EARLY_RUN + 1; i++) {
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
        int seen = atomic_load(&e.seen);
        atomic_store(&e.stop, true);
        pthread_join(rd, NULL);
        cr_assert_eq(r, 0, "the last append's callback did not come (left undrained)");
        cr_assert_eq(seen, EARLY_RUN + 1, "read %d of %d", seen, EARLY_RUN + 1);
        cr_assert_eq(atomic_load(&e.bad_order), 0);
        cr_assert_eq(atomic_load(&c.ok), 1);
        wal_scanner_close(e.s);
        wal_close(w);
        wal_opener_close(o);
}

Test(adaptor_interceptors, new_term_anchors_above_and_fences_the_old, .timeout = 60)
{
        /* A short tick period, so w1's periodic time ticks often race with
         * term 2's open (at the default 200 ms they did now and then). */
        const char *props[] = { "timetick.interval=1ms", NULL };
        wal_opener *o = NULL;
        wal *w1 = NULL, *w2 = NULL;
        cr_assert_eq(ta_opener(props, &o), 0);
        cr_assert_eq(wal_open(o, "fence", 1, WAL_ACCESS_RW, &w1, NULL), 0);
        wal_msg *last1 = NULL;
        for (int i = 0; i < 50; i++) {
                wal_msg_unref(last1);
                last1 = NULL;
                cr_assert_eq(ta_append(w1, "t1", NULL, &last1), 0);
        }
        cr_assert_eq(wal_open(o, "fence", 2, WAL_ACCESS_RW, &w2, NULL), 0);
        /* After last1 the log may hold periodic time ticks of term 1,
         * written before term 2 took over; the first message of term 2 is
         * its anchor tick, above every tick of term 1. */
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_START_AFTER, .id = wal_msg_id(last1) };
        cr_assert_eq(wal_read(w2, &d, NULL, &s, NULL), 0);
        uint64_t top1 = wal_msg_time_tick(last1);
        wal_msg *m = NULL;
        for (int n = 0;; n++) {
                cr_assert_lt(n, 100000, "no message of term 2");
                cr_assert_eq(wal_scanner_next(s, 10000, &m, NULL), 0);
                if (wal_msg_term(m) != 1)
                        break;
                cr_assert_eq(wal_msg_type(m), WAL_MSG_TIME_TICK);
                cr_assert_gt(wal_msg_time_tick(m), top1);
                top1 = wal_msg_time_tick(m);
                wal_msg_unref(m);
        }
        cr_assert_eq(wal_msg_type(m), WAL_MSG_TIME_TICK);
        cr_assert_eq(wal_msg_term(m), 2);
        cr_assert_gt(wal_msg_time_tick(m), top1);
        wal_msg_unref(m);
        wal_scanner_close(s);

        /* Term 1 is fenced: its appends fail with -ESTALE, and no retry. */
        wal_error *err = NULL;
        int r = ta_append(w1, "stale", NULL, NULL);
        cr_assert_eq(r, -ESTALE);
        wal_msg *x = ta_msg("again", NULL);
        cr_assert_eq(wal_append(w1, x, ta_count_done, NULL, &err), -ESTALE);
        cr_assert(strstr(wal_error_message(err), "fenced"), "%s", wal_error_message(err));
        wal_error_free(err);
        wal_msg_unref(x);
        /* An older term cannot open either. */
        wal *w0 = NULL;
        cr_assert_eq(wal_open(o, "fence", 1, WAL_ACCESS_RW, &w0, NULL), -ESTALE);
        cr_assert_eq(ta_append(w2, "t2", NULL, NULL), 0);
        wal_msg_unref(last1);
        wal_close(w1);
        wal_close(w2);
        ta_opener_close(o);
}

/* ---- The time tick's physical part and the append latency's clock ---- */

/* An append's tick is never ahead of the wall clock read after its
 * wal_append() returned, and its physical part lags the clock read before
 * the call by at most the bound wal-message.h documents (one kernel tick of
 * CLOCK_REALTIME_COARSE and that tick's delay; 2 ticks + 10 ms allowed here
 * for a loaded VM).  The appends are spread over 100+ ms: a reading taken
 * once and kept would fall behind by that much. */
Test(adaptor_interceptors, tick_physical_part_stays_within_its_documented_lag, .timeout = 60)
{
        struct timespec res;
        cr_assert_eq(clock_getres(CLOCK_REALTIME_COARSE, &res), 0);
        uint64_t tick_ms = (uint64_t)res.tv_sec * 1000u + (uint64_t)res.tv_nsec / 1000000u;
        uint64_t bound_ms = 2 * (tick_ms ? tick_ms : 1) + 10;
        wal_opener *o = NULL;
        wal *w = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "lag", 1, WAL_ACCESS_RW, &w, NULL), 0);
        /* The anchor's tick is the precise clock's next millisecond: past it. */
        struct timespec two_ms = { 0, 2000000 };
        nanosleep(&two_ms, NULL);
        uint64_t prev = 0;
        for (int i = 0; i < 60; i++) {
                struct timespec ts = { 0, 2000000 };
                nanosleep(&ts, NULL);
                uint64_t before = walu_realtime_ms();
                wal_msg *m = NULL;
                cr_assert_eq(ta_append(w, "lag", NULL, &m), 0);
                uint64_t after = walu_realtime_ms();
                uint64_t tt = wal_msg_time_tick(m);
                uint64_t phys = tt >> 18; /* WAL_TICK_LOGICAL_BITS */
                cr_assert_gt(tt, prev);
                prev = tt;
                cr_assert_leq(phys, after, "tick %llu ms ahead of the clock %llu ms",
                              (unsigned long long)phys, (unsigned long long)after);
                cr_assert_geq(phys + bound_ms, before, "tick %llu ms lags the clock %llu ms "
                              "by more than %llu ms", (unsigned long long)phys,
                              (unsigned long long)before, (unsigned long long)bound_ms);
                wal_msg_unref(m);
        }
        wal_close(w);
        ta_opener_close(o);
}

static int slow_do_append(void *arg, wal *w, wal_msg *msg, wal_append_next *next)
{
        (void)arg;
        (void)w;
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
        return wal_append_next_call(next, msg);
}

static void slow_done(void *arg, wal *w, const struct wal_append_result *res)
{
        (void)w;
        *(uint64_t *)arg = res->latency_ns;
}

/* latency_ns is nanoseconds (not the counter's raw units): an append held
 * 20 ms by an interceptor reports at least 20 ms, and no more than the
 * blocking call took in all. */
Test(adaptor_interceptors, latency_is_wall_time_from_the_call, .timeout = 60)
{
        uint64_t lat = 0;
        struct wal_interceptor ic = { .name = "slow", .arg = &lat,
                                      .do_append = slow_do_append, .done = slow_done };
        struct wal_open_opts opts = { .channel = "lat", .term = 1, .access = WAL_ACCESS_RW,
                                      .interceptors = &ic, .n_interceptors = 1 };
        wal_opener *o = NULL;
        wal *w = NULL;
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open_ex(o, &opts, &w, NULL), 0);
        for (int i = 0; i < 3; i++) {
                uint64_t t0 = walu_monotonic_ns();
                cr_assert_eq(ta_append(w, "slow", NULL, NULL), 0);
                uint64_t took = walu_monotonic_ns() - t0;
                cr_assert_geq(lat, 20000000u, "latency %llu ns", (unsigned long long)lat);
                cr_assert_leq(lat, took, "latency %llu ns, the call took %llu ns",
                              (unsigned long long)lat, (unsigned long long)took);
        }
        wal_close(w);
        ta_opener_close(o);
}

/* ---- Retry, against the "flaky" test backend (t-flaky.c) ---- */

Test(adaptor_interceptors, retry_redoes_retriable_failures, .timeout = 120)
{
        const char *props[] = { "retry.backoff_initial=1ms", "retry.backoff_max=5ms", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(props);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "retry", 1, WAL_ACCESS_RW, &w, NULL), 0);
        atomic_store(&flaky_mode, FLAKY_PATTERN);
        struct ta_counter c = { 0 };
        enum { N = 300 };
        for (int i = 0; i < N; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                wal_msg *m = ta_msg(t, NULL);
                wal_error *err = NULL;
                cr_assert_eq(wal_append(w, m, ta_count_done, &c, &err), 0, "%s",
                             wal_error_message(err));
                wal_msg_unref(m);
        }
        cr_assert_eq(ta_wait_calls(&c, N, 30000), 0);
        cr_assert_eq(atomic_load(&c.ok), N);
        /* Each message exactly once in the log, ticks ascending with IDs. */
        static int seen[N];
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_ALL };
        struct wal_filter f = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };
        cr_assert_eq(wal_read(w, &d, &f, &s, NULL), 0);
        uint64_t last = 0;
        for (int i = 0; i < N; i++) {
                wal_msg *m = NULL;
                cr_assert_eq(wal_scanner_next(s, 2000, &m, NULL), 0);
                seen[atoi(ta_text(m))]++;
                cr_assert_gt(wal_msg_time_tick(m), last);
                last = wal_msg_time_tick(m);
                wal_msg_unref(m);
        }
        for (int i = 0; i < N; i++)
                cr_assert_eq(seen[i], 1, "message %d seen %d times", i, seen[i]);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 200, &m, NULL), -ETIMEDOUT);
        wal_scanner_close(s);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(w, &json), 0);
        cr_assert(!strstr(json, "\"retries\":0"), "%s", json);
        free(json);
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_close(w);
        ta_opener_close(o);
}

Test(adaptor_interceptors, retry_gives_up_and_never_retries_fatal, .timeout = 60)
{
        const char *props[] = { "retry.backoff_initial=1ms", "retry.backoff_max=10ms",
                                "retry.max_elapsed=200ms", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(props);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "giveup", 1, WAL_ACCESS_RW, &w, NULL), 0);

        atomic_store(&flaky_mode, FLAKY_ALWAYS_TIMEOUT);
        uint64_t t0 = walu_monotonic_ns();
        wal_error *err = NULL;
        cr_assert_eq(ta_append(w, "x", NULL, NULL), -ETIMEDOUT);
        uint64_t el = (walu_monotonic_ns() - t0) / 1000000u;
        cr_assert(el >= 150 && el < 5000, "gave up after %llu ms", (unsigned long long)el);

        atomic_store(&flaky_mode, FLAKY_ALWAYS_EIO);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(w, &json), 0);
        const char *p = strstr(json, "\"retries\":");
        long before = p ? strtol(p + 10, NULL, 10) : -1;
        free(json);
        wal_msg *m = ta_msg("y", NULL);
        cr_assert_eq(wal_append_wait(w, m, NULL, &err), -EIO);
        wal_error_free(err);
        wal_msg_unref(m);
        cr_assert_eq(wal_stats_json(w, &json), 0);
        p = strstr(json, "\"retries\":");
        cr_assert_eq(p ? strtol(p + 10, NULL, 10) : -2, before, "-EIO was retried: %s", json);
        free(json);

        /* Closing cancels an append waiting for its retry. */
        const char *props2[] = { "retry.backoff_initial=10s", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o2 = flaky_opener(props2);
        wal *w2 = NULL;
        cr_assert_eq(wal_open(o2, "cancel", 1, WAL_ACCESS_RW, &w2, NULL), 0);
        atomic_store(&flaky_mode, FLAKY_ALWAYS_TIMEOUT);
        struct ta_counter c = { 0 };
        m = ta_msg("z", NULL);
        cr_assert_eq(wal_append(w2, m, ta_count_done, &c, NULL), 0);
        wal_msg_unref(m);
        t0 = walu_monotonic_ns();
        wal_close(w2);
        cr_assert_lt(walu_monotonic_ns() - t0, 3000000000ull);
        cr_assert_eq(atomic_load(&c.calls), 1);
        cr_assert_eq(atomic_load(&c.cancelled), 1);
        atomic_store(&flaky_mode, FLAKY_PASS);
        ta_opener_close(o2);
        wal_close(w);
        ta_opener_close(o);
}

Test(adaptor_interceptors, append_timeout_bounds_the_wait, .timeout = 60)
{
        const char *props[] = { "retry.backoff_initial=5ms", "retry.backoff_max=20ms",
                                "append.timeout=150ms", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(props);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "timeout", 1, WAL_ACCESS_RW, &w, NULL), 0);
        atomic_store(&flaky_mode, FLAKY_ALWAYS_TIMEOUT);
        uint64_t t0 = walu_monotonic_ns();
        wal_error *err = NULL;
        wal_msg *m = ta_msg("slow", NULL);
        cr_assert_eq(wal_append_wait(w, m, NULL, &err), -ETIMEDOUT);
        uint64_t el = (walu_monotonic_ns() - t0) / 1000000u;
        cr_assert(el >= 140 && el < 3000, "waited %llu ms", (unsigned long long)el);
        cr_assert(strstr(wal_error_message(err), "append.timeout"), "%s", wal_error_message(err));
        wal_error_free(err);
        wal_msg_unref(m);
        /* The append goes on retrying in the background until close. */
        wal_close(w);
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener_close(o);
}

Test(adaptor_interceptors, failed_body_rolls_the_transaction_back, .timeout = 60)
{
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(NULL);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "txnfail", 1, WAL_ACCESS_RW, &w, NULL), 0);
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
        struct wal_filter f = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) |
                                         WAL_FILTER_TYPE(WAL_MSG_TXN) };
        cr_assert_eq(wal_read(w, &d, &f, &s, NULL), 0);
        wal_txn *t = NULL;
        cr_assert_eq(wal_txn_begin(w, NULL, 0, &t, NULL), 0);
        struct ta_counter c = { 0 };
        wal_msg *m = ta_msg("ok-body", NULL);
        cr_assert_eq(wal_txn_append(t, m, ta_count_done, &c, NULL), 0);
        cr_assert_eq(ta_wait_calls(&c, 1, 5000), 0);
        atomic_store(&flaky_mode, FLAKY_ALWAYS_EIO);
        cr_assert_eq(wal_txn_append(t, m, ta_count_done, &c, NULL), 0);
        cr_assert_eq(ta_wait_calls(&c, 2, 5000), 0);
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_msg_unref(m);
        wal_error *err = NULL;
        cr_assert_eq(wal_txn_commit(t, NULL, &err), -EIO);
        cr_assert(strstr(wal_error_message(err), "rolled back"), "%s", wal_error_message(err));
        wal_error_free(err);
        cr_assert_eq(atomic_load(&c.ok), 1);
        cr_assert_eq(atomic_load(&c.failed), 1);
        cr_assert_eq(ta_append(w, "plain", NULL, NULL), 0);
        wal_msg *got = NULL;
        cr_assert_eq(wal_scanner_next(s, 2000, &got, NULL), 0);
        cr_assert_eq(wal_msg_type(got), WAL_MSG_DATA);
        cr_assert_str_eq(ta_text(got), "plain");
        wal_msg_unref(got);
        cr_assert_eq(wal_scanner_next(s, 200, &got, NULL), -ETIMEDOUT);
        wal_scanner_close(s);
        wal_close(w);
        wal_opener_close(o);
}

Test(adaptor_interceptors, retried_bodies_still_commit, .timeout = 60)
{
        const char *props[] = { "retry.backoff_initial=1ms", "retry.backoff_max=5ms", NULL };
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener *o = flaky_opener(props);
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "txnretry", 1, WAL_ACCESS_RW, &w, NULL), 0);
        wal_scanner *s = NULL;
        struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
        struct wal_filter f = { .types = WAL_FILTER_TYPE(WAL_MSG_TXN) };
        cr_assert_eq(wal_read(w, &d, &f, &s, NULL), 0);
        wal_txn *t = NULL;
        cr_assert_eq(wal_txn_begin(w, NULL, 0, &t, NULL), 0);
        atomic_store(&flaky_mode, FLAKY_PATTERN);
        struct ta_counter c = { 0 };
        for (int i = 0; i < 20; i++) {
                char text[8];
                snprintf(text, sizeof(text), "%d", i);
                wal_msg *m = ta_msg(text, NULL);
                cr_assert_eq(wal_txn_append(t, m, ta_count_done, &c, NULL), 0);
                wal_msg_unref(m);
        }
        /* Commit at once: it waits for bodies still being retried. */
        wal_error *err = NULL;
        cr_assert_eq(wal_txn_commit(t, NULL, &err), 0, "%s", wal_error_message(err));
        atomic_store(&flaky_mode, FLAKY_PASS);
        cr_assert_eq(atomic_load(&c.ok), 20);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 5000, &m, NULL), 0);
        cr_assert_eq(wal_msg_txn_body_count(m), 20);
        int seen[20] = { 0 };
        for (size_t k = 0; k < 20; k++)
                seen[atoi(ta_text(wal_msg_txn_body_at(m, k)))]++;
        for (int i = 0; i < 20; i++)
                cr_assert_eq(seen[i], 1, "body %d seen %d times", i, seen[i]);
        wal_msg_unref(m);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(w, &json), 0);
        cr_assert(!strstr(json, "\"retries\":0"), "%s", json);
        free(json);
        wal_scanner_close(s);
        wal_close(w);
        wal_opener_close(o);
}
