/* SPDX-License-Identifier: MIT */
/*
 * adaptor/scanner.c: scanners, switching between catch-up and tailing.
 *
 * A scanner has one position: the ID of the last message it consumed from
 * the log (delivered or not).  It reads in one of two modes:
 *
 *   catch-up  from a backend scanner (started after the position, or at the
 *             deliver policy when there is none yet);
 *   tailing   from the wal's write-ahead cache, by cache sequence number.
 *
 * The cache holds a contiguous run of the newest durable messages in ID
 * order (adaptor/cache.c), so "the cache can serve everything after my
 * position" is exactly "the oldest cached ID <= my position".  Catch-up
 * checks that after every message and switches to tailing at the first
 * entry after its position; tailing that finds its next entry evicted
 * switches back to catch-up after its position.  Both switches are keyed
 * on the same position, so there is no gap and no duplicate, and the order
 * is the log's ID order, which for a wal written through libwal is also
 * time-tick order.  Read-only wals have no cache: catch-up only.
 *
 * A message with a time tick below one already consumed, written by an
 * older term than that one (a fenced writer's straggler, on a backend that
 * let it land after the new owner's first tick), is dropped, so the output
 * never goes back in time.  Messages without a tick (foreign producers)
 * pass as they are.
 *
 * Every consumed message then goes through transaction assembly (bodies are
 * held until their commit and delivered as one WAL_MSG_TXN message; rolled
 * back and expired transactions are dropped: expired means idle, by time
 * tick, longer than the keepalive in its begin message, the same rule the
 * writer applies) and the filters (vchannel, type set, tick > / >=).
 *
 * The fd handed out is an epoll fd over the scanner's own eventfd (cache
 * growth) and, in catch-up, the backend scanner's fd.  Close interrupts a
 * next() blocked in either, waits for it to leave, then closes the backend
 * scanner; a wal closes its scanners before its backend wal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"

/* ---- Backend reader ---- */

static void close_impl(wal_scanner *s)
{
        pthread_mutex_lock(&s->impl_lock);
        struct walimpls_scanner *impl = s->impl;
        s->impl = NULL;
        pthread_mutex_unlock(&s->impl_lock);
        if (!impl)
                return;
        if (s->impl_fd >= 0)
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->impl_fd, NULL);
        s->impl_fd = -1;
        impl->ops->close(impl);
}

static int open_impl(wal_scanner *s, struct wal_deliver d, wal_error **reterr)
{
        wal *w = s->w;
        struct walimpls_read_opts ro = { .name = s->name, .deliver = d };
        struct walimpls_scanner *impl = NULL;
        int r = w->impl->ops->read(w->impl, &ro, &impl, reterr);
        if (r < 0) {
                if (reterr && !*reterr)
                        wal_error_set(reterr, r, 0, "reading \"%s\" (%s): %s", w->channel,
                                      wal_deliver_policy_name(d.policy), wal_strerror(r));
                return r;
        }
        int fd = impl->ops->fd ? impl->ops->fd(impl) : -1;
        if (fd >= 0) {
                struct epoll_event ev = { .events = EPOLLIN };
                if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                        fd = -1;
        }
        pthread_mutex_lock(&s->impl_lock);
        bool interrupted = s->interrupted;
        s->impl = impl;
        s->impl_fd = fd;
        pthread_mutex_unlock(&s->impl_lock);
        s->mode = WAL_SCAN_CATCHUP;
        if (interrupted) {
                close_impl(s);
                return -ESHUTDOWN;
        }
        return 0;
}

/* Catch-up from the position, or from the deliver policy with none yet. */
static int to_catchup(wal_scanner *s, wal_error **reterr)
{
        struct wal_deliver d = s->deliver;
        if (s->have_pos)
                d = (struct wal_deliver){ .policy = WAL_DELIVER_START_AFTER, .id = s->pos };
        else if (d.policy == WAL_DELIVER_FROM_TIME_TICK || d.policy == WAL_DELIVER_LATEST)
                d = (struct wal_deliver){ .policy = WAL_DELIVER_ALL };
        int r = open_impl(s, d, reterr);
        if (r == 0)
                atomic_fetch_add(&s->w->metrics.switches_to_catchup, 1);
        return r;
}

static bool try_tailing(wal_scanner *s)
{
        uint64_t seq;
        if (!s->w->has_cache || !s->have_pos ||
            wal_cache_seek_after(&s->w->cache, s->pos, &seq) < 0)
                return false;
        close_impl(s);
        s->mode = WAL_SCAN_TAILING;
        s->seq = seq;
        atomic_fetch_add(&s->w->metrics.switches_to_tailing, 1);
        return true;
}

/* ---- Transactions and filters ---- */

static void scan_txn_free(struct wal_scan_txn *t)
{
        wal_msg_unref(t->begin);
        for (size_t i = 0; i < t->n_bodies; i++)
                wal_msg_unref(t->bodies[i]);
        free(t->bodies);
        free(t);
}

static struct wal_scan_txn **scan_txn_find(wal_scanner *s, uint64_t id)
{
        struct wal_scan_txn **pp = &s->txns;
        while (*pp && (*pp)->id != id)
                pp = &(*pp)->next;
        return pp;
}

static bool scan_txn_idle_too_long(const struct wal_scan_txn *t, uint64_t tick)
{
        return tick > t->last_tick &&
               wal_tick_ms(tick) - wal_tick_ms(t->last_tick) > t->keepalive_ms;
}

/* Drop every transaction, other than @own, expired at @tick. */
static void scan_txn_expire(wal_scanner *s, uint64_t tick, uint64_t own)
{
        for (struct wal_scan_txn **pp = &s->txns; *pp;) {
                struct wal_scan_txn *t = *pp;
                if (t->id != own && scan_txn_idle_too_long(t, tick)) {
                        *pp = t->next;
                        scan_txn_free(t);
                } else {
                        pp = &t->next;
                }
        }
}

static wal_msg *assemble(struct wal_scan_txn *t, wal_msg *commit)
{
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_TXN, NULL, 0, &m) < 0)
                return NULL;
        const char *vc = wal_msg_vchannel(t->begin);
        int r = vc ? wal_msg_set_vchannel(m, vc) : 0;
        size_t n = wal_msg_prop_count(commit);
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *k, *v;
                if (wal_msg_prop_at(commit, i, &k, &v) == 0)
                        r = wal_msg_set_prop(m, k, v);
        }
        for (size_t i = 0; i < t->n_bodies && r == 0; i++)
                r = wal_msg_txn_add_body(m, t->bodies[i]);
        if (r == 0) {
                wal_msg_set_time_tick(m, wal_msg_time_tick(commit));
                wal_msg_set_term(m, wal_msg_term(commit));
                wal_msg_set_last_confirmed(m, wal_msg_last_confirmed(commit));
                wal_msg_set_txn(m, t->id, t->keepalive_ms);
                r = wal_msg_freeze(m, wal_msg_id(commit));
        }
        if (r < 0)
                return wal_msg_unref(m);
        return m;
}

static bool filter_pass(const wal_scanner *s, const wal_msg *m)
{
        const struct wal_filter *f = &s->filter;
        uint64_t tick = wal_msg_time_tick(m);
        if (f->vchannel) {
                const char *vc = wal_msg_vchannel(m);
                if (vc && strcmp(vc, f->vchannel) != 0)
                        return false;
        }
        if (f->types && !(f->types & WAL_FILTER_TYPE(wal_msg_type(m))))
                return false;
        if (f->tt_gt_set && tick <= f->tt_gt)
                return false;
        if (f->tt_ge_set && tick < f->tt_ge)
                return false;
        if (s->has_min_tick && tick < s->min_tick)
                return false;
        return true;
}

/* Consume @m (one reference, taken over); return what to deliver, or NULL. */
static wal_msg *process(wal_scanner *s, wal_msg *m)
{
        if (s->have_pos && wal_msgid_cmp(wal_msg_id(m), s->pos) <= 0) {
                /* Never twice, never backwards, whatever a source repeats. */
                wal_msg_unref(m);
                return NULL;
        }
        s->pos = wal_msg_id(m);
        s->have_pos = true;
        enum wal_msg_type type = wal_msg_type(m);
        uint64_t txn_id = wal_msg_txn_id(m);
        uint64_t tick = wal_msg_time_tick(m);
        int64_t term = wal_msg_term(m);
        if (tick != 0) {
                if (tick < s->last_tick && term < s->last_term) {
                        /* A straggler of a fenced writer, landed after the
                         * new owner's first tick: it would take the output
                         * back in time. */
                        atomic_fetch_add(&s->w->metrics.stale_dropped, 1);
                        wal_msg_unref(m);
                        return NULL;
                }
                if (tick > s->last_tick) {
                        s->last_tick = tick;
                        s->last_term = term;
                }
        }
        wal_msg *out = NULL;
        if (s->txns)
                scan_txn_expire(s, tick, txn_id);
        struct wal_scan_txn **pp = txn_id ? scan_txn_find(s, txn_id) : NULL;
        struct wal_scan_txn *t = pp ? *pp : NULL;
        switch (type) {
        case WAL_MSG_TXN_BEGIN:
                if (txn_id && !t) {
                        t = calloc(1, sizeof(*t));
                        if (t) {
                                t->id = txn_id;
                                t->begin = wal_msg_ref(m);
                                t->last_tick = tick;
                                t->keepalive_ms = wal_msg_txn_keepalive_ms(m);
                                t->next = s->txns;
                                s->txns = t;
                        }
                }
                break;
        case WAL_MSG_TXN_COMMIT:
                if (t) {
                        *pp = t->next;
                        if (!scan_txn_idle_too_long(t, tick))
                                out = assemble(t, m);
                        scan_txn_free(t);
                }
                break;
        case WAL_MSG_TXN_ROLLBACK:
                if (t) {
                        *pp = t->next;
                        scan_txn_free(t);
                }
                break;
        default:
                if (txn_id && type == WAL_MSG_DATA) {
                        /* A body: held until the commit; one of an unknown
                         * (started before this scanner, expired, rolled
                         * back) transaction is dropped. */
                        if (t && t->n_bodies == t->cap_bodies) {
                                size_t cap = t->cap_bodies ? t->cap_bodies * 2 : 8;
                                wal_msg **nb = realloc(t->bodies, cap * sizeof(*nb));
                                if (!nb)
                                        break;
                                t->bodies = nb;
                                t->cap_bodies = cap;
                        }
                        if (t) {
                                t->bodies[t->n_bodies++] = wal_msg_ref(m);
                                t->last_tick = tick;
                        }
                        break;
                }
                out = wal_msg_ref(m);
                break;
        }
        wal_msg_unref(m);
        if (out && !filter_pass(s, out))
                out = wal_msg_unref(out);
        return out;
}

/* ---- Public operations ---- */

static void scanner_free(wal_scanner *s)
{
        walimpls_notifier_done(&s->notifier);
        if (s->epfd >= 0)
                close(s->epfd);
        while (s->txns) {
                struct wal_scan_txn *t = s->txns;
                s->txns = t->next;
                scan_txn_free(t);
        }
        free((char *)s->filter.vchannel);
        free(s->name);
        pthread_mutex_destroy(&s->impl_lock);
        wal_life_done(&s->life);
        wal *w = s->w;
        free(s);
        wal_unref_internal(w);
}

static void scanner_unref(wal_scanner *s)
{
        if (s && atomic_fetch_sub(&s->refs, 1) == 1)
                scanner_free(s);
}

int wal_adaptor_read(wal *w, const struct wal_deliver *d, const struct wal_filter *f,
                     wal_scanner **ret, wal_error **reterr)
{
        int r = wal_life_enter(&w->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "wal \"%s\" is closed", w->channel);
        wal_scanner *s = calloc(1, sizeof(*s));
        if (!s) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto out;
        }
        /* Counted before it looks for its position (adaptor/wal.c): from
         * here on appends drain on their own threads, and what was left to
         * the dispatcher is in the cache. */
        wal_adaptor_reader_add(w);
        atomic_init(&s->refs, 1);
        wal_life_init(&s->life);
        pthread_mutex_init(&s->impl_lock, NULL);
        atomic_fetch_add(&w->refs, 1);
        s->w = w;
        s->epfd = -1;
        s->impl_fd = -1;
        s->notifier.efd = -1;
        s->deliver = *d;
        if (f) {
                s->filter = *f;
                s->filter.vchannel = NULL;
                if (f->vchannel && !(s->filter.vchannel = strdup(f->vchannel))) {
                        r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                        goto fail;
                }
        }
        char name[256];
        snprintf(name, sizeof(name), "%s/%lld/%llu", w->channel, (long long)w->term,
                 (unsigned long long)atomic_fetch_add(&w->next_scanner, 1));
        s->name = strdup(name);
        if (!s->name || (r = walimpls_notifier_init(&s->notifier)) < 0) {
                r = wal_error_set(reterr, r < 0 ? r : -ENOMEM, 0, "out of memory");
                goto fail;
        }
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN };
        if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->notifier.efd, &ev) < 0) {
                r = wal_error_set(reterr, -errno, 0, "epoll: %s", wal_strerror(-errno));
                goto fail;
        }

        uint64_t seq = 0;
        bool tail = false;
        switch (d->policy) {
        case WAL_DELIVER_LATEST:
                if (w->has_cache && wal_cache_tail(&w->cache, &s->pos, &seq) == 0) {
                        s->have_pos = true;
                        tail = true;
                }
                break;
        case WAL_DELIVER_START_AFTER:
                s->pos = d->id;
                s->have_pos = true;
                tail = w->has_cache && wal_cache_seek_after(&w->cache, d->id, &seq) == 0;
                break;
        case WAL_DELIVER_START_FROM:
                tail = w->has_cache && wal_cache_seek_from(&w->cache, d->id, &seq) == 0;
                break;
        case WAL_DELIVER_FROM_TIME_TICK:
                s->has_min_tick = true;
                s->min_tick = d->time_tick;
                tail = w->has_cache && wal_cache_seek_tick(&w->cache, d->time_tick, &seq) == 0;
                break;
        case WAL_DELIVER_ALL:
                break;
        }
        if (tail) {
                s->mode = WAL_SCAN_TAILING;
                s->seq = seq;
        } else {
                struct wal_deliver bd = *d;
                if (bd.policy == WAL_DELIVER_FROM_TIME_TICK)
                        bd = (struct wal_deliver){ .policy = WAL_DELIVER_ALL };
                r = open_impl(s, bd, reterr);
                if (r < 0)
                        goto fail;
        }

        pthread_mutex_lock(&w->scan_lock);
        if (w->n_scanners == w->cap_scanners) {
                size_t cap = w->cap_scanners ? w->cap_scanners * 2 : 8;
                wal_scanner **ns = realloc(w->scanners, cap * sizeof(*ns));
                if (!ns) {
                        pthread_mutex_unlock(&w->scan_lock);
                        r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                        goto fail;
                }
                w->scanners = ns;
                w->cap_scanners = cap;
        }
        atomic_fetch_add(&s->refs, 1); /* the wal's list */
        w->scanners[w->n_scanners++] = s;
        pthread_mutex_unlock(&w->scan_lock);
        atomic_fetch_add(&w->metrics.scanners_opened, 1);
        *ret = s;
        r = 0;
        goto out;
fail:
        wal_adaptor_reader_remove(w);
        close_impl(s);
        scanner_unref(s);
out:
        wal_life_leave(&w->life);
        return r;
}

static int remaining_ms(int timeout_ms, uint64_t deadline_ns)
{
        if (timeout_ms <= 0)
                return timeout_ms < 0 ? -1 : 0;
        uint64_t now = walu_monotonic_ns();
        if (now >= deadline_ns)
                return 0;
        uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
        return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* How long a blocked tailing next() spins before it parks: a busy channel
 * is served at the speed of a cache-line transfer, an idle one costs at most
 * this much CPU per wait (parking and waking costs tens of microseconds on a
 * VM, spinning costs a whole CPU, so the spin is short and yields). */
#define TAIL_SPIN_NS 20000u

static bool wait_over(wal_scanner *s, unsigned seen)
{
        /* The slot itself first: it is written with the entry, one cache
         * line transfer before the wake word. */
        return wal_cache_ready(&s->w->cache, s->seq) ||
               atomic_load(&s->w->wake_word) != seen || atomic_load(&s->stop);
}

/* Wait until the cache grew past what was seen (@seen, read before looking),
 * a close, or the deadline.  0, -ETIMEDOUT or -ECANCELED.  Spins first, and
 * again after a wake-up that found nothing new yet: a writer whose appends
 * are published within the append call wakes parked readers as its append
 * starts (wal_adaptor_append), so the reader's wake-up overlaps the append
 * and the reader finds the entry by spinning. */
static int wait_published(wal_scanner *s, unsigned seen, int timeout_ms, uint64_t deadline)
{
        wal *w = s->w;
        if (atomic_load(&s->stop))
                return -ECANCELED;
        if (timeout_ms == 0)
                return -ETIMEDOUT;
        for (;;) {
                uint64_t spin_end = walu_monotonic_ns() + TAIL_SPIN_NS;
                if (timeout_ms > 0 && spin_end > deadline)
                        spin_end = deadline;
                for (unsigned i = 1; !wait_over(s, seen); i++) {
                        wal_cpu_relax();
                        if (i % 64 == 0) {
                                if (walu_monotonic_ns() >= spin_end)
                                        break;
                                sched_yield();
                        }
                }
                if (atomic_load(&s->stop))
                        return -ECANCELED;
                /* What ended the spin (wait_over), the slot included: no
                 * park while the entry is already there. */
                if (atomic_load(&w->wake_word) != seen || wal_cache_ready(&w->cache, s->seq))
                        return 0;
                int rem = remaining_ms(timeout_ms, deadline);
                if (rem == 0)
                        return -ETIMEDOUT;
                atomic_fetch_add(&w->parked, 1);
                wal_futex_wait(&w->wake_word, seen, rem);
                atomic_fetch_sub(&w->parked, 1);
                /* Round again: the spin ends at once on a publication or a
                 * close, and the checks above decide. */
        }
}

static void deliver_count(wal_scanner *s, bool from_cache)
{
        atomic_fetch_add(&s->w->metrics.delivered, 1);
        if (from_cache)
                atomic_fetch_add(&s->w->metrics.delivered_from_cache, 1);
        else
                atomic_fetch_add(&s->w->metrics.delivered_from_backend, 1);
}

int wal_adaptor_scanner_next(wal_scanner *s, int timeout_ms, wal_msg **ret,
                             wal_error **reterr)
{
        int r = wal_life_enter(&s->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "scanner \"%s\" is closed", s->name);
        if (s->failed) {
                r = wal_error_set(reterr, s->failed, 0, "scanner \"%s\" failed earlier: %s",
                                  s->name, wal_strerror(s->failed));
                goto out;
        }
        wal *w = s->w;
        uint64_t deadline = timeout_ms > 0 ? walu_monotonic_ns() + (uint64_t)timeout_ms * 1000000u
                                           : 0;
        for (;;) {
                int rem = remaining_ms(timeout_ms, deadline);
                wal_msg *m = NULL;
                if (s->mode == WAL_SCAN_TAILING) {
                        unsigned seen = atomic_load(&w->wake_word);
                        if (atomic_load_explicit(&s->fd_wanted, memory_order_relaxed))
                                walimpls_notifier_drain(&s->notifier);
                        r = wal_cache_get(&w->cache, s->seq, &m);
                        if (r == 0) {
                                s->seq++;
                                wal_msg *out = process(s, m);
                                if (out) {
                                        deliver_count(s, true);
                                        *ret = out;
                                        break;
                                }
                                continue;
                        }
                        if (r == -ERANGE) {
                                r = to_catchup(s, reterr);
                                if (r < 0)
                                        goto failed;
                                continue;
                        }
                        if (r == -EAGAIN) {
                                r = wait_published(s, seen, timeout_ms, deadline);
                                if (r == 0)
                                        continue;
                        }
                        if (r == -ECANCELED || r == -ESHUTDOWN)
                                r = wal_error_set(reterr, -ESHUTDOWN, 0,
                                                  "scanner \"%s\" was closed", s->name);
                        break;
                }
                if (try_tailing(s))
                        continue;
                /* Cache growth matters only when tailing: keep the fd quiet. */
                walimpls_notifier_drain(&s->notifier);
                wal_error *err = NULL;
                r = s->impl->ops->next(s->impl, rem, &m, &err);
                if (err && r < 0 && r != -ETIMEDOUT && r != -ECANCELED && reterr && !*reterr)
                        *reterr = err;
                else
                        wal_error_free(err);
                if (r == 0) {
                        wal_msg *out = process(s, m);
                        if (out) {
                                deliver_count(s, false);
                                *ret = out;
                                break;
                        }
                        continue;
                }
                if (r == -ETIMEDOUT) {
                        if (rem != 0 && remaining_ms(timeout_ms, deadline) != 0)
                                continue;
                        break;
                }
                if (r == -ECANCELED) {
                        r = wal_error_set(reterr, -ESHUTDOWN, 0, "scanner \"%s\" was closed",
                                          s->name);
                        break;
                }
failed:
                s->failed = r;
                if (reterr && !*reterr)
                        wal_error_set(reterr, r, 0, "scanner \"%s\": %s", s->name,
                                      wal_strerror(r));
                break;
        }
out:
        wal_life_leave(&s->life);
        return r;
}

int wal_adaptor_scanner_fd(wal_scanner *s)
{
        /* Cache growth kicks the eventfd only from now on: one kick now
         * covers what was published before (a spurious wake-up at worst). */
        if (!atomic_exchange(&s->fd_wanted, true)) {
                atomic_fetch_add(&s->w->n_fd_scanners, 1);
                walimpls_notifier_signal(&s->notifier);
        }
        return s->epfd;
}

void wal_adaptor_scanner_close_inner(wal_scanner *s)
{
        if (!wal_life_begin_close(&s->life))
                return;
        pthread_mutex_lock(&s->impl_lock);
        s->interrupted = true;
        if (s->impl && s->impl->ops->interrupt)
                s->impl->ops->interrupt(s->impl);
        pthread_mutex_unlock(&s->impl_lock);
        walimpls_notifier_interrupt(&s->notifier);
        atomic_store(&s->stop, true);
        atomic_fetch_add(&s->w->wake_word, 1);
        wal_futex_wake_all(&s->w->wake_word);
        wal_life_wait_idle(&s->life);
        close_impl(s);

        wal *w = s->w;
        bool listed = false;
        pthread_mutex_lock(&w->scan_lock);
        for (size_t i = 0; i < w->n_scanners; i++) {
                if (w->scanners[i] == s) {
                        w->scanners[i] = w->scanners[--w->n_scanners];
                        listed = true;
                        break;
                }
        }
        if (listed && atomic_load(&s->fd_wanted))
                atomic_fetch_sub(&w->n_fd_scanners, 1);
        pthread_mutex_unlock(&w->scan_lock);
        if (listed)
                wal_adaptor_reader_remove(w);
        wal_life_set_closed(&s->life);
        if (listed)
                scanner_unref(s);
}

void wal_adaptor_scanner_close(wal_scanner *s)
{
        wal_adaptor_scanner_close_inner(s);
        scanner_unref(s);
}
