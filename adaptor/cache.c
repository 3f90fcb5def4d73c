/* SPDX-License-Identifier: MIT */
/*
 * adaptor/cache.c: the write-ahead cache.
 *
 * A ring of the most recent immutable messages of one read-write wal, in ID
 * order (which is also time-tick order), fed by the completion path with the
 * durable prefix of the append sequence only: an entry is pushed once it and
 * every message appended before it are durable.  So the cache always holds a
 * contiguous run of the log's newest messages, which is what lets a scanner
 * switch between the backend and the cache by ID with no gap and no
 * duplicate.  Every entry has a sequence number (base_seq + its index), which
 * tailing scanners use as their position.
 *
 * Eviction (on push, and by age from the wal's background thread) drops the
 * oldest entries while the cache is over cache.max_bytes or the oldest is
 * older than cache.max_age, but never the newest entry: a catch-up scanner
 * always finds a meeting point.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"

/* Age is kept in milliseconds; the coarse clock (a few ms of resolution)
 * is plenty for that and costs less than the precise one on every push. */
static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int wal_cache_init(struct wal_cache *c, uint64_t max_bytes, int64_t max_age_ms)
{
        *c = (struct wal_cache){ .max_bytes = max_bytes, .max_age_ms = max_age_ms };
        c->cap = 64;
        c->ring = calloc(c->cap, sizeof(*c->ring));
        if (!c->ring)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        return 0;
}

static struct wal_cache_entry *at(struct wal_cache *c, size_t i)
{
        return &c->ring[(c->head + i) % c->cap];
}

static void pop_head(struct wal_cache *c)
{
        struct wal_cache_entry *e = at(c, 0);
        c->bytes -= e->bytes;
        wal_msg_unref(e->msg);
        e->msg = NULL;
        c->head = (c->head + 1) % c->cap;
        c->count--;
        c->base_seq++;
        c->evictions++;
}

static void evict_locked(struct wal_cache *c, uint64_t now)
{
        while (c->count > 1) {
                struct wal_cache_entry *e = at(c, 0);
                bool old = c->max_age_ms >= 0 && now - e->pushed_ms > (uint64_t)c->max_age_ms;
                if (c->bytes <= c->max_bytes && !old)
                        break;
                pop_head(c);
        }
}

void wal_cache_done(struct wal_cache *c)
{
        if (!c->ring)
                return;
        while (c->count > 0)
                pop_head(c);
        free(c->ring);
        c->ring = NULL;
        pthread_mutex_destroy(&c->lock);
}

int wal_cache_push(struct wal_cache *c, wal_msg *m)
{
        uint64_t now = now_ms();
        pthread_mutex_lock(&c->lock);
        if (c->closed) {
                pthread_mutex_unlock(&c->lock);
                return -ESHUTDOWN;
        }
        struct wal_msgid id = wal_msg_id(m);
        if (c->count > 0)
                WAL_ASSERT(wal_msgid_cmp(at(c, c->count - 1)->id, id) < 0);
        if (c->count == c->cap) {
                size_t ncap = c->cap * 2;
                struct wal_cache_entry *nr = calloc(ncap, sizeof(*nr));
                if (!nr) {
                        pthread_mutex_unlock(&c->lock);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < c->count; i++)
                        nr[i] = *at(c, i);
                free(c->ring);
                c->ring = nr;
                c->cap = ncap;
                c->head = 0;
        }
        size_t bytes = wal_msg_size(m) + 64; /* + bookkeeping, so empty messages count */
        *at(c, c->count) = (struct wal_cache_entry){
                .msg = wal_msg_ref(m),
                .id = id,
                .tick = wal_msg_time_tick(m),
                .bytes = bytes,
                .pushed_ms = now,
        };
        c->count++;
        c->bytes += bytes;
        evict_locked(c, now);
        atomic_store_explicit(&c->end_seq, c->base_seq + c->count, memory_order_release);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

void wal_cache_evict_aged(struct wal_cache *c)
{
        pthread_mutex_lock(&c->lock);
        evict_locked(c, now_ms());
        pthread_mutex_unlock(&c->lock);
}

int wal_cache_get(struct wal_cache *c, uint64_t seq, wal_msg **ret)
{
        /* The common answer of a tailing reader, without the lock. */
        if (seq >= atomic_load_explicit(&c->end_seq, memory_order_acquire) &&
            !atomic_load_explicit(&c->closed, memory_order_relaxed))
                return -EAGAIN;
        int r = 0;
        pthread_mutex_lock(&c->lock);
        if (c->closed)
                r = -ESHUTDOWN;
        else if (seq < c->base_seq)
                r = -ERANGE;
        else if (seq >= c->base_seq + c->count)
                r = -EAGAIN;
        else
                *ret = wal_msg_ref(at(c, (size_t)(seq - c->base_seq))->msg);
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Index of the first entry whose ID is > @id (@strict) or >= @id. */
static size_t lower_bound(struct wal_cache *c, struct wal_msgid id, bool strict)
{
        size_t lo = 0, hi = c->count;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int cmp = wal_msgid_cmp(at(c, mid)->id, id);
                if (cmp < 0 || (strict && cmp == 0))
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The cache can serve a position @id when it lies within the cached run:
 * older IDs may be missing from it, and a newer one may belong to a message
 * the backend already shows but the completion path has not pushed yet. */
static bool covers(struct wal_cache *c, struct wal_msgid id)
{
        return c->count > 0 && wal_msgid_cmp(at(c, 0)->id, id) <= 0 &&
               wal_msgid_cmp(id, at(c, c->count - 1)->id) <= 0;
}

int wal_cache_seek_after(struct wal_cache *c, struct wal_msgid after, uint64_t *ret_seq)
{
        int r = -ERANGE;
        pthread_mutex_lock(&c->lock);
        if (covers(c, after)) {
                *ret_seq = c->base_seq + lower_bound(c, after, true);
                r = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

int wal_cache_seek_from(struct wal_cache *c, struct wal_msgid from, uint64_t *ret_seq)
{
        int r = -ERANGE;
        pthread_mutex_lock(&c->lock);
        if (covers(c, from)) {
                *ret_seq = c->base_seq + lower_bound(c, from, false);
                r = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

int wal_cache_seek_tick(struct wal_cache *c, uint64_t tick, uint64_t *ret_seq)
{
        int r = -ERANGE;
        pthread_mutex_lock(&c->lock);
        if (c->count > 0 && at(c, 0)->tick <= tick) {
                size_t lo = 0, hi = c->count;
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (at(c, mid)->tick < tick)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                *ret_seq = c->base_seq + lo;
                r = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

uint64_t wal_cache_end_seq(struct wal_cache *c)
{
        pthread_mutex_lock(&c->lock);
        uint64_t s = c->base_seq + c->count;
        pthread_mutex_unlock(&c->lock);
        return s;
}

int wal_cache_tail(struct wal_cache *c, struct wal_msgid *ret_id, uint64_t *ret_seq)
{
        int r = -ERANGE;
        pthread_mutex_lock(&c->lock);
        if (c->count > 0) {
                *ret_id = at(c, c->count - 1)->id;
                *ret_seq = c->base_seq + c->count;
                r = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void wal_cache_close(struct wal_cache *c)
{
        pthread_mutex_lock(&c->lock);
        c->closed = true;
        uint64_t ev = c->evictions;
        while (c->count > 0)
                pop_head(c);
        c->evictions = ev; /* releasing at close is not eviction */
        pthread_mutex_unlock(&c->lock);
}

void wal_cache_stats(struct wal_cache *c, size_t *entries, size_t *bytes, uint64_t *evictions)
{
        pthread_mutex_lock(&c->lock);
        *entries = c->count;
        *bytes = c->bytes;
        *evictions = c->evictions;
        pthread_mutex_unlock(&c->lock);
}
