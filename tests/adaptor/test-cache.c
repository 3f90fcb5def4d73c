/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/test-cache.c: the write-ahead cache's lock-free reads
 * (adaptor/cache.c) against a pusher that grows the ring, wraps it and
 * evicts on every push: readers must get exactly the entry they asked for
 * (payload, ID and tick all of that sequence number), -EAGAIN only past the
 * end, -ERANGE only below the oldest entry, and never touch a released
 * message (ASan runs this too).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "adaptor/adaptor.h"

#define READERS 3
#define GROW_N 5000         /* pushes with no eviction: the ring doubles 6 times */
#define WRAP_N 200000       /* pushes that each evict: the ring wraps constantly */
#define KEEP 8              /* entries kept while wrapping */

struct race {
        struct wal_cache c;
        atomic_bool stop;
        atomic_uint_fast64_t pushed;     /* entries pushed so far */
};

struct reader {
        struct race *rc;
        int id;
        atomic_long got, evicted;       /* read by the pusher while it runs */
        long wrong;
        char why[160];
};

static wal_msg *entry(uint64_t seq)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, &seq, sizeof(seq), &m), 0);
        wal_msg_set_time_tick(m, seq + 1);
        cr_assert_eq(wal_msg_freeze(m, WAL_MSGID(0, seq + 1)), 0);
        return m;
}

/* 0 if @m is entry @seq, else a description in rd->why. */
static int check(struct reader *rd, uint64_t seq, const wal_msg *m)
{
        size_t len = 0;
        const void *p = wal_msg_payload(m, &len);
        uint64_t v = 0;
        if (len == sizeof(v))
                memcpy(&v, p, sizeof(v));
        if (len != sizeof(v) || v != seq || wal_msg_id(m).lo != seq + 1 ||
            wal_msg_time_tick(m) != seq + 1) {
                snprintf(rd->why, sizeof(rd->why),
                         "reader %d asked for %llu, got payload %llu id %llu tick %llu",
                         rd->id, (unsigned long long)seq, (unsigned long long)v,
                         (unsigned long long)wal_msg_id(m).lo,
                         (unsigned long long)wal_msg_time_tick(m));
                return -1;
        }
        return 0;
}

/* Reader 0 tails (next sequence, spinning on -EAGAIN, jumping to the end on
 * -ERANGE); the others read at the eviction edge, where entries go away
 * while they look. */
static void *reader_main(void *arg)
{
        struct reader *rd = arg;
        struct race *rc = rd->rc;
        uint64_t seq = 0;
        while (!atomic_load(&rc->stop)) {
                if (rd->id > 0) {
                        uint64_t end = atomic_load(&rc->pushed);
                        seq = end > KEEP + 1 ? end - KEEP - 1 + (uint64_t)(rd->id % 3) : 0;
                }
                wal_msg *m = NULL;
                int r = wal_cache_get(&rc->c, seq, &m);
                if (r == 0) {
                        if (check(rd, seq, m) < 0)
                                rd->wrong++;
                        wal_msg_unref(m);
                        atomic_fetch_add(&rd->got, 1);
                        seq++;
                } else if (r == -ERANGE) {
                        /* only below the oldest entry, which is at least
                         * pushed - KEEP - 1 by now... or was when evicted */
                        if (seq >= atomic_load(&rc->pushed)) {
                                snprintf(rd->why, sizeof(rd->why),
                                         "reader %d: -ERANGE for %llu, not pushed yet",
                                         rd->id, (unsigned long long)seq);
                                rd->wrong++;
                        }
                        atomic_fetch_add(&rd->evicted, 1);
                        seq = atomic_load(&rc->pushed);
                } else if (r == -EAGAIN) {
                        if (seq < atomic_load(&rc->pushed) && wal_cache_ready(&rc->c, seq) &&
                            wal_cache_get(&rc->c, seq, &m) == -EAGAIN) {
                                snprintf(rd->why, sizeof(rd->why),
                                         "reader %d: -EAGAIN for %llu, pushed already",
                                         rd->id, (unsigned long long)seq);
                                rd->wrong++;
                        }
                        if (m)
                                wal_msg_unref(m);
                        sched_yield();
                } else {
                        rd->wrong++;
                        snprintf(rd->why, sizeof(rd->why), "reader %d: %d", rd->id, r);
                        break;
                }
        }
        return NULL;
}

/* Whether every reader has read something and an edge reader has met an
 * eviction: what the race needs to have been run at all. */
static bool raced(struct reader *rd)
{
        for (int i = 0; i < READERS; i++)
                if (atomic_load(&rd[i].got) == 0)
                        return false;
        return atomic_load(&rd[1].evicted) + atomic_load(&rd[2].evicted) > 0;
}

/* The pusher goes on wrapping after WRAP_N pushes until every reader has
 * read and an edge reader has met an eviction (at most RACE_MAX_S): on a
 * busy machine the readers may not have had a CPU yet, and that is no fault
 * of the cache.  (It asserted them after a fixed count, and failed once
 * under load in session 8.) */
#define RACE_MAX_S 120

Test(adaptor_cache, readers_race_growth_wrap_and_eviction, .timeout = 240)
{
        struct race rc = { 0 };
        /* A small cache.max_bytes gives a small first ring (128 slots); the
         * limit is lifted before the first push so the ring grows. */
        cr_assert_eq(wal_cache_init(&rc.c, 4096, -1), 0);
        rc.c.max_bytes = UINT64_MAX;
        struct reader rd[READERS];
        pthread_t th[READERS];
        for (int i = 0; i < READERS; i++) {
                rd[i].rc = &rc;
                rd[i].id = i;
                atomic_init(&rd[i].got, 0);
                atomic_init(&rd[i].evicted, 0);
                rd[i].wrong = 0;
                rd[i].why[0] = '\0';
                cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
        }
        uint64_t seq = 0;
        for (; seq < GROW_N; seq++) {
                wal_msg *m = entry(seq);
                cr_assert_eq(wal_cache_push(&rc.c, m), 0);
                wal_msg_unref(m);
                atomic_store(&rc.pushed, seq + 1);
                if (seq % 64 == 0)
                        sched_yield();
        }
        /* Now every push evicts one: KEEP entries of 8 + 64 bytes each. */
        pthread_mutex_lock(&rc.c.lock);
        rc.c.max_bytes = KEEP * (sizeof(uint64_t) + 64);
        pthread_mutex_unlock(&rc.c.lock);
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bool all_raced = false;
        for (; seq < GROW_N + WRAP_N || !all_raced; seq++) {
                if (seq >= GROW_N + WRAP_N && seq % 1024 == 0) {
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        if (now.tv_sec - t0.tv_sec > RACE_MAX_S)
                                break;
                }
                if (seq % 1024 == 0)
                        all_raced = raced(rd);
                wal_msg *m = entry(seq);
                cr_assert_eq(wal_cache_push(&rc.c, m), 0);
                wal_msg_unref(m);
                atomic_store(&rc.pushed, seq + 1);
                if (seq % 1000 == 0)
                        wal_cache_evict_aged(&rc.c);
                if (seq % 256 == 0)
                        sched_yield();
        }
        atomic_store(&rc.stop, true);
        long got = 0;
        for (int i = 0; i < READERS; i++) {
                pthread_join(th[i], NULL);
                cr_assert_eq(rd[i].wrong, 0, "%s", rd[i].why);
                got += atomic_load(&rd[i].got);
        }
        cr_log_info("pushes %llu, reads %ld, evicted seen %ld/%ld/%ld",
                    (unsigned long long)seq, got, atomic_load(&rd[0].evicted),
                    atomic_load(&rd[1].evicted), atomic_load(&rd[2].evicted));
        /* The race was run: every reader read, the edge readers met
         * evictions (false only if the readers had no CPU for
         * RACE_MAX_S). */
        cr_assert(raced(rd), "in %d s of pushing, reads %ld/%ld/%ld, edge evictions %ld/%ld",
                  RACE_MAX_S, atomic_load(&rd[0].got), atomic_load(&rd[1].got),
                  atomic_load(&rd[2].got), atomic_load(&rd[1].evicted),
                  atomic_load(&rd[2].evicted));
        size_t entries = 0, bytes = 0;
        uint64_t evictions = 0;
        wal_cache_stats(&rc.c, &entries, &bytes, &evictions);
        cr_assert_eq(entries, KEEP);
        cr_assert_geq(evictions, seq - GROW_N - KEEP);
        wal_cache_close(&rc.c);
        wal_msg *m = NULL;
        cr_assert_eq(wal_cache_get(&rc.c, seq - 1, &m), -ESHUTDOWN);
        wal_cache_done(&rc.c);
}
