/* SPDX-License-Identifier: MIT */
/*
 * adaptor/adaptor.h: the adaptor's objects, shared by its files and by the
 * public API in wal/api.c (not installed).
 *
 * Lock order (outer first): opener.lock > wal.append_lock > cache.lock;
 * wal.scan_lock, wal.tick_lock and txn.lock are leaves.  The pending queue
 * takes no lock (adaptor/wal.c).  No lock is held while a user callback or
 * interceptor hook runs, except that interceptors below "timetick" run
 * under append_lock (they are built-ins).
 */
#ifndef WAL_ADAPTOR_H
#define WAL_ADAPTOR_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <wal/wal-api.h>
#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <walimpls/walimpls.h>

/* ---- Lifetime: state + in-flight counter ---- */

enum { WAL_LIFE_OPEN = 0, WAL_LIFE_CLOSING, WAL_LIFE_CLOSED };

struct wal_life {
        pthread_mutex_t lock;       /* state changes, and waits on cond */
        pthread_cond_t cond;
        atomic_int state;           /* WAL_LIFE_* */
        atomic_uint inflight;       /* public calls running inside */
};

void wal_life_init(struct wal_life *l);
void wal_life_done(struct wal_life *l);
/* Enter a call: 0, or -ESHUTDOWN once closing. */
int wal_life_enter(struct wal_life *l);
void wal_life_leave(struct wal_life *l);
/* Start closing: true for the one caller that must do the work; any other
 * caller waits until that work finished (state CLOSED) and gets false. */
bool wal_life_begin_close(struct wal_life *l);
/* Wait for calls in flight to leave. */
void wal_life_wait_idle(struct wal_life *l);
void wal_life_set_closed(struct wal_life *l);
bool wal_life_is_open(struct wal_life *l);

/* ---- Metrics ---- */

#define WAL_HIST_BUCKETS 32         /* bucket i counts latencies < 2^i microseconds */

struct wal_hist {
        atomic_uint_fast64_t b[WAL_HIST_BUCKETS];
        atomic_uint_fast64_t count;
        atomic_uint_fast64_t sum_us;
};

struct wal_metrics {
        atomic_uint_fast64_t appends_ok;
        atomic_uint_fast64_t appends_failed;
        atomic_uint_fast64_t appends_refused;
        atomic_uint_fast64_t append_bytes;
        atomic_uint_fast64_t retries;
        atomic_uint_fast64_t ticks;
        atomic_uint_fast64_t txn_begun;
        atomic_uint_fast64_t txn_committed;
        atomic_uint_fast64_t txn_rolled_back;
        atomic_uint_fast64_t txn_expired;
        /* readers' counters, apart from the writers' (no false sharing) */
        alignas(64) atomic_uint_fast64_t scanners_opened;
        atomic_uint_fast64_t delivered;
        atomic_uint_fast64_t delivered_from_cache;
        atomic_uint_fast64_t delivered_from_backend;
        atomic_uint_fast64_t switches_to_tailing;
        atomic_uint_fast64_t switches_to_catchup;
        atomic_uint_fast64_t stale_dropped;
        alignas(64) struct wal_hist append_latency;
};

void wal_hist_add(struct wal_hist *h, uint64_t ns);
/* Quantile @q (0..1) of @h as an upper bucket bound in microseconds. */
uint64_t wal_hist_quantile_us(const struct wal_hist *h, double q);

/* ---- Write-ahead cache ---- */

/* One entry.  Readers that hold no lock look at @seq and @msg only (see
 * adaptor/cache.c); the other fields are read and written under the lock. */
struct wal_cache_slot {
        atomic_uint_fast64_t seq;    /* entry's sequence + 1; 0: empty or evicted */
        _Atomic(wal_msg *) msg;      /* immutable, one reference */
        struct wal_msgid id;
        uint64_t tick;
        size_t bytes;
        uint64_t pushed_ms;          /* CLOCK_MONOTONIC_COARSE */
};

struct wal_cache_ring {
        size_t mask;                 /* capacity - 1 (a power of two) */
        struct wal_cache_ring *older; /* replaced rings, freed with the cache */
        size_t map_len;              /* bytes of this ring's mapping */
        size_t populated;            /* bytes from the start faulted in ahead
                                        (pusher only, under the cache lock) */
        alignas(64) struct wal_cache_slot slot[];
};

struct wal_cache {
        /* Read by every reader's every look, written only when the ring
         * grows or the cache closes: a line apart from the pusher's (the
         * lock and the counts below, written on every push), so a spinning
         * reader does not take that line from the pusher mid-push. */
        alignas(64) _Atomic(struct wal_cache_ring *) ring;
        atomic_bool closed;
        alignas(64) pthread_mutex_t lock;    /* every change; the seek functions */
        size_t count;
        uint64_t base_seq;           /* sequence number of the oldest entry */
        size_t bytes;
        uint64_t max_bytes;
        int64_t max_age_ms;
        uint64_t evictions;
        /* Evicted messages wait here until no reader can still be taking a
         * reference to them (epoch-based release, adaptor/cache.c). */
        wal_msg **retired, **waiting;
        size_t n_retired, cap_retired, n_waiting, cap_waiting;
        unsigned waiting_parity;
        /* base_seq + count, published after each push (release). */
        alignas(64) atomic_uint_fast64_t end_seq;
        /* Readers' side of the epoch scheme, on a line of its own: written
         * by readers, read by the pusher only when it has evictions to
         * release. */
        alignas(64) atomic_uint epoch;
        atomic_uint active[2];
        char epoch_pad[64 - 3 * sizeof(atomic_uint)];
};

int wal_cache_init(struct wal_cache *c, uint64_t max_bytes, int64_t max_age_ms);
void wal_cache_done(struct wal_cache *c);
/* Push an immutable message (a reference is taken); IDs must ascend.
 * Evicts by size and age, never the newest entry. */
int wal_cache_push(struct wal_cache *c, wal_msg *m);
void wal_cache_evict_aged(struct wal_cache *c);
/* Entry @seq: 0 and *ret (a new reference); -ERANGE evicted; -EAGAIN not yet
 * there; -ESHUTDOWN closed.  Takes no lock: any number of readers may call
 * it while the pusher pushes and evicts. */
int wal_cache_get(struct wal_cache *c, uint64_t seq, wal_msg **ret);
/* Whether entry @seq is there (or the cache closed): a cheap check for a
 * reader spinning for it, no lock, no reference taken. */
bool wal_cache_ready(struct wal_cache *c, uint64_t seq);
/* Sequence of the first entry with ID > @after (the next one to read after
 * @after), provided the cache holds everything after @after: 0, or -ERANGE
 * when @after is older than the oldest entry or newer than the newest (or
 * the cache is empty). */
int wal_cache_seek_after(struct wal_cache *c, struct wal_msgid after, uint64_t *ret_seq);
/* Sequence of the first entry with ID >= @from: 0, or -ERANGE as above. */
int wal_cache_seek_from(struct wal_cache *c, struct wal_msgid from, uint64_t *ret_seq);
/* Sequence of the first entry with time tick >= @tick, provided the oldest
 * entry's tick is <= @tick (so nothing older is needed): 0 or -ERANGE.  A
 * later message with a smaller tick can still arrive: the caller filters. */
int wal_cache_seek_tick(struct wal_cache *c, uint64_t tick, uint64_t *ret_seq);
/* Sequence one past the newest entry. */
uint64_t wal_cache_end_seq(struct wal_cache *c);
/* Position at the newest entry: its ID and the sequence after it.  0, or
 * -ERANGE when empty. */
int wal_cache_tail(struct wal_cache *c, struct wal_msgid *ret_id, uint64_t *ret_seq);
void wal_cache_close(struct wal_cache *c);
void wal_cache_stats(struct wal_cache *c, size_t *entries, size_t *bytes,
                     uint64_t *evictions);

/* ---- Appends in flight ---- */

struct wal_op_slab;

struct wal_append_op {
        wal *w;
        wal_msg *msg;                /* the caller's copy, mutable, owned */
        wal_msg *sent;               /* what the backend got (reference) */
        wal_msg *own;                /* this attempt's message when it is the
                                        adaptor's own (op->msg, or a redo's
                                        copy), which the backend may keep
                                        (append_take); not a reference */
        wal_append_done_fn *done;
        void *userdata;
        wal_txn *txn;                /* begin/body/commit/rollback of it (reference) */
        bool internal;               /* time tick or txn control: any type allowed */
        bool in_slab;                /* part of a wal_op_slab: never free()d alone
                                        (in the padding: the op does not grow) */
        uint64_t t_start;            /* walu_cycles() at wal_append(): the
                                        latency's start */
        unsigned attempts;
        size_t bytes;                /* wal_msg_size() of the message, by validate */
        bool tick;                   /* it is a time tick, by validate */
        size_t depth;                /* chain links entered (their done hooks run) */
        /* retry */
        bool retry_armed;
        size_t retry_idx;            /* chain link to resume from */
        uint64_t retry_first_ns;
        int64_t backoff_ms;
        uint64_t retry_due_ns;
        /* outcome.  The drainer's pop reads completed and pnext of the
         * queue's head.  97f909c reordered this struct (completed among the
         * first line's fields, retry's state last, 64-byte aligned): the
         * dispatcher thread's share of the process CPU went from 27-29 % to
         * 40-49 % in bench-api --workload append --take 1 (perf record, 2
         * runs each), so this order was put back; which of the two
         * changes did it was not measured apart. */
        atomic_bool completed;       /* set by the backend's completion */
        int status;
        wal_msg *result;             /* the immutable message, for the dispatcher */
        struct wal_msgid id;
        wal_error *err;
        /* retry list (wal.tick_lock), the pool, lists of outcomes */
        struct wal_append_op *next;
        /* the pending queue (adaptor/wal.c) */
        _Atomic(struct wal_append_op *) pnext;
};

struct wal_append_next {
        wal *w;
        struct wal_append_op *op;
        size_t idx;
};

typedef int wal_builtin_fn(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
typedef void wal_builtin_done_fn(wal *w, struct wal_append_op *op,
                                 const struct wal_append_result *res);

struct wal_chain_link {
        char *name;                          /* owned */
        struct wal_interceptor ic;           /* user interceptor (name points at ->name) */
        wal_builtin_fn *builtin;             /* or a built-in */
        wal_builtin_done_fn *builtin_done;
};

/* ---- Objects ---- */

struct wal_opener {
        atomic_int refs;
        struct wal_life life;
        const struct walimpls_builder *builder;
        struct walimpls_opener *impl;
        wal_config *cfg;
        pthread_mutex_t lock;                /* wals, interceptors */
        wal **wals;
        size_t n_wals, cap_wals;
        struct wal_chain_link *ics;          /* user interceptors, in order */
        size_t n_ics;
        atomic_uint_fast64_t next_serial;
};

enum wal_txn_state {
        WAL_TXN_OPEN = 0,
        WAL_TXN_COMMITTING,
        WAL_TXN_DONE,
        WAL_TXN_EXPIRED,
};

struct wal_txn {
        wal *w;                      /* reference */
        uint64_t id;
        char *vchannel;              /* owned, may be NULL */
        uint32_t keepalive_ms;
        /* under w->append_lock */
        enum wal_txn_state state;
        uint64_t last_tick;          /* tick of its newest message */
        struct wal_msgid lc_floor;   /* last-confirmed when the begin was stamped */
        bool listed;                 /* in w->txns */
        struct wal_txn *next;
        /* bodies in flight */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned inflight;
        int body_error;
        /* An asynchronous end (wal_txn_commit_async(), or a commit or
         * rollback called inside an append callback), under lock: it starts
         * when the last body in flight completes (adaptor/txn.c). */
        bool end_pending;
        enum wal_msg_type end_type;          /* COMMIT or ROLLBACK */
        wal_append_done_fn *end_done;        /* may be NULL */
        void *end_userdata;
        /* the end's control message was appended as: ROLLBACK after a body
         * failed a commit (set before it is appended, read by its callback) */
        enum wal_msg_type end_sent;
};

struct wal {
        atomic_int refs;
        struct wal_life life;
        wal_opener *opener;                  /* reference */
        struct walimpls_wal *impl;
        char *channel;
        int64_t term;
        enum wal_access access;
        uint64_t serial;

        /* configuration */
        uint64_t max_bytes;
        int64_t retry_initial_ms, retry_max_ms, retry_max_elapsed_ms;
        int64_t tick_interval_ms, txn_keepalive_ms, append_timeout_ms;

        struct wal_chain_link *chain;
        size_t n_chain;
        size_t n_user_links;                 /* user links come first */
        bool user_done_hooks;                /* one of them has a done hook */
        bool builtins_only;                  /* the chain is the four built-ins:
                                                appends run them fused
                                                (wal_builtins_append()) */
        /* Scanners opened or opening: read by every append, written
         * only when a scanner opens or closes, so kept here among the
         * fields fixed at open, off the dispatcher's lines (cb_*,
         * drain_wanted: written per drain). */
        atomic_int n_readers;

        /* appends: ticks and backend appends happen under append_lock */
        pthread_mutex_t append_lock;
        uint64_t last_tick;
        atomic_bool fenced;
        struct wal_txn *txns;                /* open transactions (append_lock) */
        uint64_t appended_since_tick;        /* (append_lock) */
        atomic_uint_fast64_t next_txn_id;

        /* Appends accepted by the backend, in ID order (adaptor/wal.c,
         * "The pending queue"): linked by appenders under append_lock with
         * no other lock, popped by the drainer. */
        alignas(64) _Atomic(struct wal_append_op *) pend_tail;
        char pend_pad[64 - sizeof(void *)];
        struct wal_append_op *pend_head;     /* the drainer's */
        /* the drainer's: its last pop found a complete op at the head
         * whose successor an appender is half-way through linking */
        bool pend_stuck;
        uint64_t settle_seen;                /* the drainer's: last @settle_done */
        struct wal_append_op pend_stub;
        /* settle() (adaptor/wal.c): a settler takes a number from
         * @settle_want; a drain pass that read it at its start publishes
         * it in @settle_done once the ops it popped are in the cache. */
        alignas(64) atomic_uint_fast64_t settle_want;
        atomic_uint_fast64_t settle_done;
        /* One drainer at a time: the thread that set @draining.  A
         * completion counts itself in @completions after flagging its op;
         * the drainer goes back to the list only when the count moved
         * (adaptor/wal.c, drain()). */
        atomic_bool draining;
        atomic_uint_fast64_t completions;
        /* End of the durable prefix: written by the drainer, read by
         * appenders (time tick's last-confirmed ID) through a sequence
         * lock, no pend_lock (adaptor/wal.c, wal_durable_id()). */
        atomic_uint durable_seq;
        atomic_uint_fast64_t durable_hi, durable_lo;

        /* background thread: periodic ticks, retries, txn expiry */
        pthread_mutex_t tick_lock;
        pthread_cond_t tick_cond;
        bool ticker_running, ticker_stop;
        pthread_t ticker;
        struct wal_append_op *retry_head;

        /* dispatcher thread: runs completion hooks and callbacks in order,
         * off the backend's threads (see adaptor/wal.c); a blocking
         * appender may run the run of blocking appends at the head of the
         * queue itself instead.  cb_busy: someone (the dispatcher or such
         * an appender) is running finished ops; only one at a time. */
        pthread_mutex_t cb_lock;
        pthread_cond_t cb_cond;
        struct wal_append_op *cb_head, *cb_tail;
        bool cb_stop, cb_sleeping, cb_busy;
        atomic_uint cb_queued;               /* bumped by every hand-over */
        /* An appender left the drain of its completed append to the
         * dispatcher (no scanner to deliver to, see adaptor/wal.c); the
         * dispatcher is idle (about to wait on cb_cond, or waiting): an
         * appender that sets drain_wanted then wakes it.  A line of their
         * own: every append reads and sets drain_wanted and the dispatcher
         * spins on it, while the line above (cb_head, cb_busy, cb_queued)
         * is written at every hand-over. */
        pthread_t cb_thread;
        alignas(64) atomic_bool drain_wanted;
        atomic_bool cb_idle;

        /* Read by every append, written only at open and close: a line
         * apart from the cb_* fields above, which the dispatcher writes on
         * every batch it takes (sharing theirs, every append's first look
         * at these missed).  n_readers, read by every append too, is with
         * the fields fixed at open, above. */
        alignas(64) bool cb_running;         /* the dispatcher (cb_lock) */
        /* Where wal_append() copies go (RW only; NULL: malloc): memory
         * faulted in ahead of use, since the cache and an in-memory backend
         * keep these copies (wal/message-internal.h). */
        struct wal_msg_arena *arena;

        /* finished ops kept for reuse (adaptor/wal.c): appenders take the
         * one op_spare with an exchange; under append_lock (which finishers
         * never take) it is refilled from pool_mine, and pool_mine with
         * everything finishers pushed onto pool_free.  A line of their own,
         * apart from cb_lock and cb_head, which the dispatcher writes. */
        alignas(64) _Atomic(struct wal_append_op *) op_spare;
        struct wal_append_op *pool_mine;     /* append_lock */
        size_t pool_taken;                   /* from pool_mine, not yet counted */
        struct wal_op_slab *op_slabs;        /* new ops, made in runs (append_lock) */
        alignas(64) _Atomic(struct wal_append_op *) pool_free;
        atomic_size_t pool_size;             /* about how many ops both lists hold */
        char pool_pad[64 - sizeof(void *) - sizeof(atomic_size_t)];

        struct wal_cache cache;
        bool has_cache;
        atomic_bool no_flush;                /* the backend has no wal.flush */

        pthread_mutex_t scan_lock;
        wal_scanner **scanners;
        size_t n_scanners, cap_scanners;
        atomic_uint_fast64_t next_scanner;
        /* Tailing scanners wait for cache growth on wake_word (a futex
         * word bumped once per published batch, woken only when parked >
         * 0); scanners whose fd was asked for also get their eventfd kicked
         * (n_fd_scanners of them). */
        alignas(64) atomic_uint wake_word;
        atomic_int parked;
        atomic_int n_fd_scanners;
        /* The last append was published before its call returned: the
         * next one wakes parked readers as it starts (adaptor/wal.c). */
        atomic_bool publish_inline;
        char wake_pad[64 - sizeof(atomic_uint) - 2 * sizeof(atomic_int) - sizeof(atomic_bool)];

        struct wal_metrics metrics;
};

enum wal_scan_mode { WAL_SCAN_CATCHUP = 1, WAL_SCAN_TAILING };

/* A transaction being assembled by a scanner. */
struct wal_scan_txn {
        uint64_t id;
        wal_msg *begin;              /* reference */
        wal_msg **bodies;
        size_t n_bodies, cap_bodies;
        uint64_t last_tick;
        uint32_t keepalive_ms;
        struct wal_scan_txn *next;
};

struct wal_scanner {
        atomic_int refs;
        struct wal_life life;
        wal *w;                              /* reference */
        char *name;
        struct wal_deliver deliver;
        struct wal_filter filter;            /* vchannel owned */
        bool has_min_tick;                   /* FROM_TIME_TICK */
        uint64_t min_tick;
        enum wal_scan_mode mode;
        pthread_mutex_t impl_lock;           /* impl vs. interrupt from close */
        bool interrupted;
        struct walimpls_scanner *impl;       /* catch-up reader, or NULL */
        uint64_t seq;                        /* tailing: next cache sequence */
        bool have_pos;
        struct wal_msgid pos;                /* last message consumed (any kind) */
        struct walimpls_notifier notifier;   /* its eventfd: cache growth, interrupt */
        atomic_bool fd_wanted;               /* wal_scanner_fd() was called */
        atomic_bool stop;                    /* closing: waits end */
        int epfd;                            /* the fd handed out */
        int impl_fd;                         /* backend fd added to epfd, or -1 */
        int failed;                          /* sticky error */
        uint64_t last_tick;                  /* newest tick consumed */
        int64_t last_term;                   /* its term */
        struct wal_scan_txn *txns;
};

/* ---- Entry points used by wal/api.c (arguments already checked) ---- */

int wal_adaptor_opener_new(const struct walimpls_builder *b, const wal_config *cfg,
                           wal_opener **ret, wal_error **reterr);
int wal_adaptor_opener_add_interceptor(wal_opener *o, const struct wal_interceptor *ic,
                                       wal_error **reterr);
int wal_adaptor_list_channels(wal_opener *o, wal_channel_fn *fn, void *arg,
                              wal_error **reterr);
int wal_adaptor_opener_stats_json(wal_opener *o, char **ret);
void wal_adaptor_opener_close(wal_opener *o);
void wal_opener_unref_internal(wal_opener *o);

int wal_adaptor_open(wal_opener *o, const struct wal_open_opts *opts, wal **ret,
                     wal_error **reterr);
/* @msg is borrowed (copied), or with @take handed over: on success the
 * caller's reference is the adaptor's (the message itself is sent when that
 * reference is its only one and it is mutable; else a copy, and the
 * reference is released); on an error it stays the caller's. */
int wal_adaptor_append(wal *w, wal_msg *msg, bool take, wal_txn *txn, bool internal,
                       wal_append_done_fn *done, void *userdata, wal_error **reterr);
int wal_adaptor_append_wait(wal *w, wal_msg *msg, wal_txn *txn, bool internal,
                            int64_t timeout_ms, wal_msg **ret_msg, wal_error **reterr);
int wal_adaptor_next_call(wal_append_next *next, wal_msg *msg);
int wal_adaptor_truncate(wal *w, struct wal_msgid id, wal_error **reterr);
int wal_adaptor_info(wal *w, struct wal_info *ret, wal_error **reterr);
int wal_adaptor_stats_json(wal *w, char **ret);
/* Close the wal's inside (idempotent); the handle stays until unref. */
void wal_adaptor_close_inner(wal *w);
void wal_adaptor_close(wal *w);
void wal_unref_internal(wal *w);
void wal_adaptor_notify_scanners(wal *w);
/* A scanner of @w is being opened (before it looks for its position) or
 * closed: appends drain on their own thread while one exists; opening
 * first settles the completions left to the dispatcher, so the cache holds
 * every append completed before the call. */
void wal_adaptor_reader_add(wal *w);
void wal_adaptor_reader_remove(wal *w);

int wal_adaptor_read(wal *w, const struct wal_deliver *d, const struct wal_filter *f,
                     wal_scanner **ret, wal_error **reterr);
int wal_adaptor_scanner_next(wal_scanner *s, int timeout_ms, wal_msg **ret,
                             wal_error **reterr);
int wal_adaptor_scanner_fd(wal_scanner *s);
void wal_adaptor_scanner_close_inner(wal_scanner *s);
void wal_adaptor_scanner_close(wal_scanner *s);

int wal_adaptor_txn_begin(wal *w, const char *vchannel, uint32_t keepalive_ms,
                          wal_txn **ret, wal_error **reterr);
int wal_adaptor_txn_append(wal_txn *t, wal_msg *msg, wal_append_done_fn *done,
                           void *userdata, wal_error **reterr);
int wal_adaptor_txn_commit(wal_txn *t, wal_msg **ret_msg, wal_error **reterr);
int wal_adaptor_txn_rollback(wal_txn *t, wal_error **reterr);
int wal_adaptor_txn_commit_async(wal_txn *t, wal_append_done_fn *done, void *userdata,
                                 wal_error **reterr);
/* A body of @t is no longer in flight: it completed with @status, or was
 * refused (@status 0: a refused body is no part of the transaction).  A
 * failure fails the commit; when it was the last body in flight, a pending
 * asynchronous end starts.  @t may be gone when this returns. */
void wal_txn_body_finished(wal_txn *t, int status);
void wal_txn_free_internal(wal_txn *t);
/* True on a thread running append callbacks or done hooks (adaptor/wal.c). */
bool wal_adaptor_in_callback(void);

/* Built-in interceptors (adaptor/interceptors.c). */
int wal_builtin_retry(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
int wal_builtin_validate(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
int wal_builtin_timetick(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
int wal_builtin_metrics(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
void wal_builtin_metrics_done(wal *w, struct wal_append_op *op,
                              const struct wal_append_result *res);
bool wal_status_retriable(int status, const wal_error *err);
/* Next hybrid-logical-clock tick (append_lock held). */
uint64_t wal_next_tick(wal *w);
/* End of the durable prefix (any thread, no lock). */
struct wal_msgid wal_durable_id(wal *w);
/* Last-confirmed ID for a message stamped now (append_lock held). */
struct wal_msgid wal_current_last_confirmed(wal *w);
/* Queue @op for a retry after its backoff (takes ownership). */
void wal_schedule_retry(wal *w, struct wal_append_op *op);
bool wal_retry_allowed(wal *w, struct wal_append_op *op);
/* Run the chain from link @idx (the last link calls the backend). */
int wal_chain_call(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx);
/* The chain's last step: the backend's append, then the link into the
 * pending queue (append_lock held). */
int wal_backend_append(wal *w, struct wal_append_op *op, wal_msg *msg);
/* wal_chain_call(w, op, msg, 0) for a chain of the built-ins alone
 * (w->n_user_links == 0), with direct calls (adaptor/interceptors.c). */
int wal_builtins_append(wal *w, struct wal_append_op *op, wal_msg *msg);

/* JSON helpers (adaptor/metrics.c). */
struct wal_strbuf {
        char *buf;
        size_t len, cap;
        bool oom;
};
void wal_strbuf_printf(struct wal_strbuf *sb, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void wal_strbuf_json_string(struct wal_strbuf *sb, const char *s);
void wal_metrics_json(wal *w, struct wal_strbuf *sb);

/* ---- Waiting (adaptor/wal.c, adaptor/scanner.c) ---- */

/* Sleep while *@word == @val, for at most @timeout_ms (< 0: no limit).
 * Returns on a wake, a change, a signal or the timeout: callers recheck. */
void wal_futex_wait(atomic_uint *word, unsigned val, int timeout_ms);
/* Wake every thread sleeping on @word. */
void wal_futex_wake_all(atomic_uint *word);

static inline void wal_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
}

#define WAL_TICK_LOGICAL_BITS 18
static inline uint64_t wal_tick_ms(uint64_t tick)
{
        return tick >> WAL_TICK_LOGICAL_BITS;
}

#endif /* WAL_ADAPTOR_H */
