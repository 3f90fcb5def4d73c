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
 * tailing scanners use as their position; entry @seq lives in slot
 * @seq & mask of the ring (a power of two, sized from cache.max_bytes,
 * doubled when full).
 *
 * Eviction (on push, and by age from the wal's background thread) drops the
 * oldest entries while the cache is over cache.max_bytes or the oldest is
 * older than cache.max_age, but never the newest entry: a catch-up scanner
 * always finds a meeting point.
 *
 * Pushes, evictions and seeks run under the lock (one pusher at a time, the
 * wal's drainer).  wal_cache_get(), a tailing scanner's every read, takes no
 * lock:
 *
 *   - a slot's `seq` is the entry's sequence + 1 while it holds that entry,
 *     0 once evicted.  The pusher fills a slot (found at 0) and then stores
 *     its seq (release); eviction stores 0 first.  A reader loads seq, the
 *     message pointer, then seq again and the ring pointer again: both
 *     unchanged means the pointer was that entry's while it looked.  seq
 *     never returns to an older value, so there is no ABA.
 *   - a replaced ring (growth) is kept until the cache is freed, so a reader
 *     still looking at it reads valid memory; the ring re-check sends it to
 *     the new one.
 *   - an evicted message is not released at once: a reader may have loaded
 *     its pointer and be about to take a reference.  Readers announce
 *     themselves in one of two counters (active[epoch & 1]); evicted
 *     messages gather in `retired`; the pusher moves them to `waiting`,
 *     flips the epoch (new readers count on the other counter) and releases
 *     them once the old counter was seen at 0.  Eviction's store of 0, the
 *     flip and the check are sequentially consistent, as are the reader's
 *     increment and its loads of the slot: either the pusher sees the
 *     reader's count, or the reader sees the slot emptied and never uses
 *     the pointer.  A reader is inside for a few loads and one increment,
 *     so releases lag evictions by about one push.
 */
#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* Rings are anonymous mappings: their pages come zeroed (an empty slot's
 * seq is 0) and are faulted in only as pushes come near them (a window
 * ahead, ring_populate_ahead()), so a large first ring costs nothing until
 * it is used and no ring is ever cleared by hand. */
static struct wal_cache_ring *ring_new(size_t cap)
{
        size_t len = sizeof(struct wal_cache_ring) + cap * sizeof(struct wal_cache_slot);
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        struct wal_cache_ring *r = p;
        r->mask = cap - 1;
        r->map_len = len;
        return r;
}

/* Fault in a ring's pages a window ahead of the pusher (@e, the slot it
 * just filled and published), so that no push takes a first-touch fault:
 * with about 85 slots a page, every 85th push used to, at 2-4 us each on a
 * VM.  The window is renewed when less than half of it is left, so the next
 * slot is always in it, except the first of a ring (new, or just grown),
 * whose page the push's own write faults in.  Pages
 * stay for the ring's life, so after the first lap nothing is left to do
 * (walu_populate(), which also touches pages the pusher already wrote
 * without changing them). */
#define RING_AHEAD ((size_t)64 << 10)

static void ring_populate_ahead(struct wal_cache_ring *r, const struct wal_cache_slot *e)
{
        size_t off = (size_t)((const char *)(e + 1) - (const char *)r);
        if (r->populated >= r->map_len || off + RING_AHEAD / 2 <= r->populated)
                return;
        /* Pushes move one slot at a time, except into a ring just grown:
         * start the window where the pusher is. */
        size_t from = off > r->populated + RING_AHEAD ? off & ~(RING_AHEAD - 1) : r->populated;
        size_t to = from + RING_AHEAD < r->map_len ? from + RING_AHEAD : r->map_len;
        walu_populate((char *)r + from, to - from);
        r->populated = to;
}

static void ring_free(struct wal_cache_ring *r)
{
        munmap(r, r->map_len);
}

/* The first ring holds as many entries as max_bytes allows (each counts
 * its payload + 64 bytes, and the newest is never evicted), up to
 * RING_PRESIZE_MAX slots: a cache that fills up in a short run does not
 * pay for doubling its ring on the way (copies, and every page faulted
 * twice).  Bigger caches start there and double. */
#define RING_MIN 64u
#define RING_PRESIZE_MAX ((size_t)1 << 19)

static size_t first_cap(uint64_t max_bytes)
{
        uint64_t want = max_bytes / 64 + 2;
        size_t cap = RING_MIN;
        while (cap < want && cap < RING_PRESIZE_MAX)
                cap *= 2;
        return cap;
}

int wal_cache_init(struct wal_cache *c, uint64_t max_bytes, int64_t max_age_ms)
{
        memset(c, 0, sizeof(*c));
        c->max_bytes = max_bytes;
        c->max_age_ms = max_age_ms;
        struct wal_cache_ring *r = ring_new(first_cap(max_bytes));
        if (!r)
                return -ENOMEM;
        atomic_init(&c->ring, r);
        pthread_mutex_init(&c->lock, NULL);
        return 0;
}

/* The ring as the lock holder sees it. */
static struct wal_cache_ring *ring_of(struct wal_cache *c)
{
        return atomic_load_explicit(&c->ring, memory_order_relaxed);
}

static struct wal_cache_slot *at(struct wal_cache *c, size_t i)
{
        struct wal_cache_ring *r = ring_of(c);
        return &r->slot[(c->base_seq + i) & r->mask];
}

static int vec_push(wal_msg ***v, size_t *n, size_t *cap, wal_msg *m)
{
        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 64;
                wal_msg **nv = realloc(*v, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = ncap;
        }
        (*v)[(*n)++] = m;
        return 0;
}

/* Evicted messages are old, out of the CPU's caches by now: their lines
 * are fetched a few messages ahead. */
static void release_waiting(struct wal_cache *c)
{
        enum { AHEAD = 8 };
        for (size_t i = 0; i < c->n_waiting && i < AHEAD; i++)
                __builtin_prefetch(c->waiting[i], 1);
        for (size_t i = 0; i < c->n_waiting; i++) {
                if (i + AHEAD < c->n_waiting)
                        __builtin_prefetch(c->waiting[i + AHEAD], 1);
                wal_msg_unref(c->waiting[i]);
        }
        c->n_waiting = 0;
}

/* Release what waited for the old epoch's readers, once they are gone;
 * then start a new grace period for what was retired since. */
static void reclaim(struct wal_cache *c)
{
        if (c->n_waiting > 0) {
                if (atomic_load(&c->active[c->waiting_parity]) != 0)
                        return;
                release_waiting(c);
        }
        if (c->n_retired == 0)
                return;
        wal_msg **v = c->waiting;
        size_t cap = c->cap_waiting;
        c->waiting = c->retired;
        c->cap_waiting = c->cap_retired;
        c->n_waiting = c->n_retired;
        c->retired = v;
        c->cap_retired = cap;
        c->n_retired = 0;
        c->waiting_parity = atomic_fetch_add(&c->epoch, 1) & 1;
        if (atomic_load(&c->active[c->waiting_parity]) == 0)
                release_waiting(c);
}

/* Take the oldest entry out; its message is released after a grace period
 * (or at once when @now_ok: no reader can be inside any more). */
static void pop_head(struct wal_cache *c, bool now_ok)
{
        struct wal_cache_slot *e = at(c, 0);
        wal_msg *m = atomic_load_explicit(&e->msg, memory_order_relaxed);
        atomic_store(&e->seq, 0);
        atomic_store_explicit(&e->msg, NULL, memory_order_relaxed);
        c->bytes -= e->bytes;
        c->base_seq++;
        c->count--;
        c->evictions++;
        if (now_ok || vec_push(&c->retired, &c->n_retired, &c->cap_retired, m) < 0) {
                /* Out of memory for the list: wait here for the readers
                 * inside (a few loads each) instead. */
                if (!now_ok)
                        while (atomic_load(&c->active[0]) || atomic_load(&c->active[1]))
                                sched_yield();
                wal_msg_unref(m);
        }
}

#define RECLAIM_BATCH 64

static void evict_locked(struct wal_cache *c, uint64_t now)
{
        bool any = false;
        while (c->count > 1) {
                struct wal_cache_slot *e = at(c, 0);
                bool old = c->max_age_ms >= 0 && now - e->pushed_ms > (uint64_t)c->max_age_ms;
                if (c->bytes <= c->max_bytes && !old)
                        break;
                pop_head(c, false);
                any = true;
        }
        /* In batches: each grace period costs the readers a miss or two. */
        if (any && c->n_retired >= RECLAIM_BATCH)
                reclaim(c);
}

/* No reader is left (the wal closed its scanners): release everything. */
void wal_cache_done(struct wal_cache *c)
{
        struct wal_cache_ring *r = ring_of(c);
        if (!r)
                return;
        while (c->count > 0)
                pop_head(c, true);
        for (size_t i = 0; i < c->n_retired; i++)
                wal_msg_unref(c->retired[i]);
        for (size_t i = 0; i < c->n_waiting; i++)
                wal_msg_unref(c->waiting[i]);
        free(c->retired);
        free(c->waiting);
        while (r) {
                struct wal_cache_ring *older = r->older;
                ring_free(r);
                r = older;
        }
        atomic_store(&c->ring, NULL);
        pthread_mutex_destroy(&c->lock);
}

/* Double the ring; the old one stays readable (readers may still look at
 * it) and is freed with the cache. */
static int grow(struct wal_cache *c)
{
        struct wal_cache_ring *old = ring_of(c);
        struct wal_cache_ring *r = ring_new((old->mask + 1) * 2);
        if (!r)
                return -ENOMEM;
        for (size_t i = 0; i < c->count; i++) {
                uint64_t seq = c->base_seq + i;
                struct wal_cache_slot *src = &old->slot[seq & old->mask];
                struct wal_cache_slot *dst = &r->slot[seq & r->mask];
                dst->id = src->id;
                dst->tick = src->tick;
                dst->bytes = src->bytes;
                dst->pushed_ms = src->pushed_ms;
                atomic_init(&dst->msg, atomic_load_explicit(&src->msg, memory_order_relaxed));
                atomic_init(&dst->seq, seq + 1);
        }
        r->older = old;
        atomic_store_explicit(&c->ring, r, memory_order_release);
        return 0;
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
        if (c->count == ring_of(c)->mask + 1 && grow(c) < 0) {
                pthread_mutex_unlock(&c->lock);
                return -ENOMEM;
        }
        size_t bytes = wal_msg_size(m) + 64; /* + bookkeeping, so empty messages count */
        uint64_t seq = c->base_seq + c->count;
        struct wal_cache_slot *e = at(c, c->count);
        WAL_ASSERT(atomic_load_explicit(&e->seq, memory_order_relaxed) == 0);
        e->id = id;
        e->tick = wal_msg_time_tick(m);
        e->bytes = bytes;
        e->pushed_ms = now;
        atomic_store_explicit(&e->msg, wal_msg_ref(m), memory_order_relaxed);
        atomic_store_explicit(&e->seq, seq + 1, memory_order_release);
        c->count++;
        c->bytes += bytes;
        evict_locked(c, now);
        atomic_store_explicit(&c->end_seq, c->base_seq + c->count, memory_order_release);
        /* After the entry is published: a tailing reader has it while the
         * pusher faults in the window ahead (16 pages every 32 KiB of
         * slots, tens of microseconds here), not after. */
        ring_populate_ahead(ring_of(c), e);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

void wal_cache_evict_aged(struct wal_cache *c)
{
        pthread_mutex_lock(&c->lock);
        evict_locked(c, now_ms());
        reclaim(c);
        pthread_mutex_unlock(&c->lock);
}

int wal_cache_get(struct wal_cache *c, uint64_t seq, wal_msg **ret)
{
        /* A tailing reader's usual answer, before entering. */
        if (!wal_cache_ready(c, seq))
                return -EAGAIN;
        /* Enter the current epoch (see the top of the file). */
        unsigned e;
        for (;;) {
                e = atomic_load(&c->epoch);
                atomic_fetch_add(&c->active[e & 1], 1);
                if (atomic_load(&c->epoch) == e)
                        break;
                atomic_fetch_sub_explicit(&c->active[e & 1], 1, memory_order_release);
        }
        int r;
        for (;;) {
                struct wal_cache_ring *ring = atomic_load(&c->ring);
                struct wal_cache_slot *sl = &ring->slot[seq & ring->mask];
                if (atomic_load(&sl->seq) == seq + 1) {
                        wal_msg *m = atomic_load_explicit(&sl->msg, memory_order_relaxed);
                        if (atomic_load(&sl->seq) == seq + 1 && atomic_load(&c->ring) == ring) {
                                *ret = wal_msg_ref(m);
                                r = 0;
                                break;
                        }
                        continue;
                }
                if (atomic_load_explicit(&c->closed, memory_order_acquire)) {
                        r = -ESHUTDOWN;
                        break;
                }
                if (seq >= atomic_load_explicit(&c->end_seq, memory_order_acquire)) {
                        r = -EAGAIN;
                        break;
                }
                /* Pushed already: it is there unless the ring moved or it
                 * was evicted. */
                if (atomic_load(&c->ring) != ring || atomic_load(&sl->seq) == seq + 1)
                        continue;
                r = -ERANGE;
                break;
        }
        atomic_fetch_sub_explicit(&c->active[e & 1], 1, memory_order_release);
        return r;
}

bool wal_cache_ready(struct wal_cache *c, uint64_t seq)
{
        struct wal_cache_ring *ring = atomic_load_explicit(&c->ring, memory_order_acquire);
        return atomic_load_explicit(&ring->slot[seq & ring->mask].seq, memory_order_acquire) ==
                       seq + 1 ||
               seq < atomic_load_explicit(&c->end_seq, memory_order_acquire) ||
               atomic_load_explicit(&c->closed, memory_order_relaxed);
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
        atomic_store(&c->closed, true);
        uint64_t ev = c->evictions;
        while (c->count > 0)
                pop_head(c, false);
        reclaim(c);
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
