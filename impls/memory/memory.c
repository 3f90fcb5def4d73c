/* SPDX-License-Identifier: MIT */
/*
 * impls/memory/memory.c: the in-process reference backend ("memory").
 *
 * The opener owns a map channel -> log; a log outlives the wals opened on it
 * and lives until the opener closes, so data survives wal close/reopen within
 * one opener but not the process (no WALIMPLS_CAP_PERSISTENT).
 *
 * A log is a deque of immutable messages (copies made by append, carved
 * from the log's arena, whose memory is faulted in ahead of use; or the
 * caller's own message given to append_take, frozen with their ID) sorted by
 * sequence number; IDs are WAL_MSGID(0, seq), seq
 * starting at 1.  Sequence numbers are assigned at append() time, under the
 * wal's queue lock, from the log's counter, so they follow the order in which
 * append() calls returned.  A message becomes visible to scanners only when
 * the wal's completion thread commits it ("durable" here means "in the
 * log"); close cancels what was not committed yet, so sequence numbers may
 * have holes, never reorderings.
 *
 * Ownership and fencing: every read-write open bumps the log's owner
 * generation (after checking term >= the recorded term, else -ESTALE).  A wal
 * whose generation is no longer the log's is fenced: append and truncate
 * refuse with -ESTALE and its pending commits fail with -ESTALE.  So a new RW
 * open at the SAME term also takes over from an older RW wal still open: one
 * writer at a time.  Because only the current owner can commit, and its
 * sequence numbers are all above those of any earlier owner, committed
 * messages always arrive at the tail in ascending order.
 *
 * Completions (memory.completion).  "inline", the default: append() commits
 * the message into the log under the log lock and runs its completion before
 * it returns, on the caller's thread; nothing is ever in flight, so close has
 * nothing to cancel.  Memory is as durable as this backend gets the moment
 * the entry is in the log, so a hand-off to another thread would only add a
 * wake-up (tens of microseconds on a VM) to every append.  "thread": one
 * completion thread per read-write wal, the shape of a backend with real I/O
 * (tests use it to exercise completions on another thread and cancellation
 * at close).  append() pushes onto a queue and wakes the thread only if it
 * is idle; the thread swaps the whole queue out, commits it under one log
 * lock, wakes the log's scanners once, then runs the callbacks in order.
 * Close sets a flag and joins the thread, which cancels (-ECANCELED)
 * whatever it had not taken yet.
 *
 * Truncation drops the log's reference to every message with seq <= id
 * (clamped to the last committed one; an arena chunk is unmapped once
 * every message carved from it is gone) and records the truncation point; a scanner whose next
 * position is at or below it fails with -ERANGE instead of skipping.
 * Scanners wait on a walimpls_notifier each, signalled once per committed
 * batch; a tailing scanner finds its next entry in O(1) through a logical
 * index hint, others by binary search on the seq kept beside each entry.
 *
 * Locks: opener.lock (channel map) -> log.lock (entries, scanners, owner) ->
 * wal.qlock (pending queue).  No lock is held while a completion runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <walimpls/walimpls.h>
#include <wal/wal-registry.h>
#include "utility/walu.h"
#include "wal/message-internal.h"

/* ---- Objects ---- */

struct mem_entry {
        uint64_t seq;                /* == wal_msg_id(msg).lo, kept here for searching */
        wal_msg *msg;                /* frozen, one reference held by the log */
};

struct mem_log {
        pthread_mutex_t lock;
        char *channel;
        struct mem_entry *ents;      /* [head, tail) live, ascending seq; a
                                        mapping of cap entries (log_reserve) */
        struct wal_msg_arena *arena; /* where append's copies go (faulted in
                                        ahead: wal/message-internal.h) */
        size_t head, tail, cap;
        uint64_t removed;            /* entries ever dropped from the front: the
                                        logical index of ents[i] is removed + i - head */
        int64_t bytes;               /* sum of wal_msg_size of live messages */
        atomic_uint_fast64_t next_seq; /* next sequence to assign, starts at 1 */
        uint64_t trunc_seq;          /* highest truncated seq, 0 = never */
        int64_t term;                /* recorded owner term, -1 = none yet */
        atomic_uint_fast64_t owner_gen; /* bumped by every RW open */
        struct mem_scanner **scanners; /* to wake on commit/truncate */
        size_t n_scanners, cap_scanners;
};

struct mem_opener {
        struct walimpls_opener base;   /* must be first */
        bool threaded;                 /* memory.completion=thread */
        pthread_mutex_t lock;
        struct mem_log **logs;
        size_t n_logs, cap_logs;
};

struct mem_pending {
        wal_msg *msg;                  /* frozen copy, one reference */
        walimpls_append_done_fn *done;
        void *arg;
};

struct mem_queue {
        struct mem_pending *v;
        size_t n, cap;
};

struct mem_wal {
        struct walimpls_wal base;      /* must be first */
        struct mem_log *log;           /* borrowed from the opener */
        uint64_t gen;                  /* owner generation of this RW open */
        pthread_mutex_t qlock;
        pthread_cond_t qcond;
        struct mem_queue q;            /* pending, in seq order */
        struct mem_queue spare;        /* owned by the completion thread */
        bool busy;                     /* completion thread is not waiting */
        bool closing;
        bool has_thread;               /* memory.completion=thread: all appends queue */
        pthread_t thread;
};

struct mem_scanner {
        struct walimpls_scanner base;  /* must be first */
        struct mem_log *log;
        struct walimpls_notifier notifier;
        uint64_t pos;                  /* next seq wanted (first seq >= pos) */
        uint64_t hint;                 /* logical index likely holding pos */
        atomic_bool interrupted;
};

static const struct walimpls_opener_ops mem_opener_ops;
static const struct walimpls_wal_ops mem_wal_ops;
static const struct walimpls_scanner_ops mem_scanner_ops;

static const char mem_durability[] =
        "process memory: lost when the opener is closed or the process exits";

static struct mem_opener *opener_from_base(struct walimpls_opener *o)
{
        WAL_ASSERT(o->ops == &mem_opener_ops);
        return (struct mem_opener *)o;
}

static struct mem_wal *wal_from_base(struct walimpls_wal *w)
{
        WAL_ASSERT(w->ops == &mem_wal_ops);
        return (struct mem_wal *)w;
}

static struct mem_scanner *scanner_from_base(struct walimpls_scanner *s)
{
        WAL_ASSERT(s->ops == &mem_scanner_ops);
        return (struct mem_scanner *)s;
}

/* ---- Logs ---- */

static struct mem_log *log_new(const char *channel)
{
        struct mem_log *l = calloc(1, sizeof(*l));
        if (!l)
                return NULL;
        l->channel = strdup(channel);
        if (!l->channel) {
                free(l);
                return NULL;
        }
        if (wal_msg_arena_new(&l->arena) < 0) {
                free(l->channel);
                free(l);
                return NULL;
        }
        pthread_mutex_init(&l->lock, NULL);
        atomic_init(&l->next_seq, 1);
        atomic_init(&l->owner_gen, 0);
        l->term = -1;
        return l;
}

static void log_free(struct mem_log *l)
{
        if (!l)
                return;
        for (size_t i = l->head; i < l->tail; i++)
                wal_msg_unref(l->ents[i].msg);
        if (l->ents)
                munmap(l->ents, l->cap * sizeof(*l->ents));
        wal_msg_arena_free(l->arena);
        free(l->scanners);
        free(l->channel);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

/* Make room for @n more messages at the tail.  Caller holds l->lock.
 * The array is an anonymous mapping: it grows by mremap() (no copy of the
 * live entries) and its new pages are faulted in at once, so an append
 * never takes a first-touch fault writing its entry (one append in 256
 * did, 2-4 us each on a VM, and the doubling copied the whole array). */
static int log_reserve(struct mem_log *l, size_t n)
{
        if (l->tail + n <= l->cap)
                return 0;
        size_t live = l->tail - l->head;
        /* Slide the live entries down only when that frees at least as
         * many slots as it copies: a window held just under the capacity
         * by truncation would otherwise copy the whole array at almost
         * every append (15 us an append at 131,070 entries). */
        if (l->head > 0 && l->head >= live) {
                memmove(l->ents, l->ents + l->head, live * sizeof(*l->ents));
                l->head = 0;
                l->tail = live;
                if (live + n <= l->cap)
                        return 0;
        }
        size_t ncap = l->cap ? l->cap * 2 : 256;
        while (ncap < live + n)
                ncap *= 2;
        size_t olen = l->cap * sizeof(*l->ents), nlen = ncap * sizeof(*l->ents);
        void *p = l->ents ? mremap(l->ents, olen, nlen, MREMAP_MAYMOVE)
                          : mmap(NULL, nlen, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -ENOMEM;
        walu_populate((char *)p + olen, nlen - olen);
        l->ents = p;
        l->cap = ncap;
        return 0;
}

/* Index of the first live message with seq >= @pos.  Caller holds l->lock. */
static size_t log_lower_bound(const struct mem_log *l, uint64_t pos)
{
        size_t lo = l->head, hi = l->tail;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (l->ents[mid].seq < pos)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Wake every scanner of @l.  Caller holds l->lock. */
static void log_wake_scanners(struct mem_log *l)
{
        for (size_t i = 0; i < l->n_scanners; i++)
                walimpls_notifier_signal(&l->scanners[i]->notifier);
}

/* ---- Builder and opener ---- */

static int mem_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr);

static const struct wal_property mem_properties[] = {
        { "memory.completion", WAL_PROP_ENUM, "inline", 1, 0, "inline|thread", 0,
          "Where appends complete: inline (in the log before append returns, on the "
          "caller's thread) or thread (queued to a completion thread per wal, which "
          "close cancels)." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static const struct walimpls_builder walimpls_memory = {
        .version = WALIMPLS_VERSION,
        .name = "memory",
        .description = "in-process reference backend: data lives in the opener, "
                       "lost when it closes",
        .caps = WALIMPLS_CAP_TRUNCATE | WALIMPLS_CAP_FENCING | WALIMPLS_CAP_LIST,
        .properties = mem_properties,
        .build = mem_build,
};
WAL_REGISTER_BACKEND(walimpls_memory);

/*
 * Build an opener.  @cfg is borrowed; NULL means the defaults.
 */
static int mem_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "memory: build: NULL ret");
        const char *completion = cfg ? wal_config_get(cfg, "memory.completion") : NULL;
        bool threaded = completion && strcmp(completion, "thread") == 0;
        if (completion && !threaded && strcmp(completion, "inline") != 0)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "memory: memory.completion \"%s\": inline or thread",
                                     completion);
        struct mem_opener *o = calloc(1, sizeof(*o));
        if (!o)
                return wal_error_set(reterr, -ENOMEM, 0, "memory: build: out of memory");
        o->threaded = threaded;
        o->base.ops = &mem_opener_ops;
        o->base.builder = &walimpls_memory;
        pthread_mutex_init(&o->lock, NULL);
        *ret = &o->base;
        return 0;
}

/* Find (and with @create, make) the log of @channel.  Caller holds o->lock. */
static int opener_log(struct mem_opener *o, const char *channel, bool create,
                      struct mem_log **ret)
{
        for (size_t i = 0; i < o->n_logs; i++)
                if (strcmp(o->logs[i]->channel, channel) == 0) {
                        *ret = o->logs[i];
                        return 0;
                }
        if (!create)
                return -ENOENT;
        if (o->n_logs == o->cap_logs) {
                size_t ncap = o->cap_logs ? o->cap_logs * 2 : 8;
                struct mem_log **nv = realloc(o->logs, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                o->logs = nv;
                o->cap_logs = ncap;
        }
        struct mem_log *l = log_new(channel);
        if (!l)
                return -ENOMEM;
        o->logs[o->n_logs++] = l;
        *ret = l;
        return 0;
}

static void *completion_thread(void *arg);

/*
 * Open @opts->channel (borrowed; copied).  RW creates the channel, checks
 * and records the term and fences every earlier RW wal; RO needs the channel
 * to exist.
 */
static int mem_open(struct walimpls_opener *base, const struct walimpls_open_opts *opts,
                    struct walimpls_wal **ret, wal_error **reterr)
{
        if (!base || !opts || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "memory: open: NULL argument");
        if (!walimpls_channel_name_valid(opts->channel))
                return wal_error_set(reterr, -EINVAL, 0, "memory: open: invalid channel name '%s'",
                                     opts->channel ? opts->channel : "(null)");
        if (opts->term < 0)
                return wal_error_set(reterr, -EINVAL, 0, "memory: open %s: negative term %lld",
                                     opts->channel, (long long)opts->term);
        if (opts->access != WAL_ACCESS_RO && opts->access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EINVAL, 0, "memory: open %s: bad access mode %d",
                                     opts->channel, (int)opts->access);
        struct mem_opener *o = opener_from_base(base);
        bool rw = opts->access == WAL_ACCESS_RW;

        struct mem_wal *w = calloc(1, sizeof(*w));
        if (!w)
                return wal_error_set(reterr, -ENOMEM, 0, "memory: open: out of memory");
        int r = walimpls_wal_init(&w->base, &mem_wal_ops, base, opts);
        if (r < 0) {
                free(w);
                return wal_error_set(reterr, r, 0, "memory: open: out of memory");
        }
        pthread_mutex_init(&w->qlock, NULL);
        pthread_cond_init(&w->qcond, NULL);

        pthread_mutex_lock(&o->lock);
        struct mem_log *l = NULL;
        r = opener_log(o, opts->channel, rw, &l);
        if (r < 0) {
                pthread_mutex_unlock(&o->lock);
                if (r == -ENOENT)
                        wal_error_set(reterr, r, 0, "memory: open %s read-only: no such channel",
                                      opts->channel);
                else
                        wal_error_set(reterr, r, 0, "memory: open %s: out of memory",
                                      opts->channel);
                goto fail;
        }
        w->log = l;
        if (rw) {
                pthread_mutex_lock(&l->lock);
                if (opts->term < l->term) {
                        int64_t owner = l->term;
                        pthread_mutex_unlock(&l->lock);
                        pthread_mutex_unlock(&o->lock);
                        r = wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                          "memory: open %s at term %lld: fenced by term %lld",
                                          opts->channel, (long long)opts->term,
                                          (long long)owner);
                        goto fail;
                }
                w->busy = true; /* until the thread first waits */
                r = o->threaded ? pthread_create(&w->thread, NULL, completion_thread, w) : 0;
                if (r != 0) {
                        pthread_mutex_unlock(&l->lock);
                        pthread_mutex_unlock(&o->lock);
                        r = wal_error_set(reterr, -r, 0,
                                          "memory: open %s: cannot start completion thread",
                                          opts->channel);
                        goto fail;
                }
                w->has_thread = o->threaded;
                l->term = opts->term;
                w->gen = atomic_fetch_add(&l->owner_gen, 1) + 1;
                pthread_mutex_unlock(&l->lock);
        }
        pthread_mutex_unlock(&o->lock);
        *ret = &w->base;
        return 0;
fail:
        pthread_cond_destroy(&w->qcond);
        pthread_mutex_destroy(&w->qlock);
        walimpls_wal_done(&w->base);
        free(w);
        return r;
}

/* List channels: names are copied under the lock, the callback runs outside. */
static int mem_list_channels(struct walimpls_opener *base, walimpls_channel_fn *fn, void *arg,
                             wal_error **reterr)
{
        if (!base || !fn)
                return wal_error_set(reterr, -EINVAL, 0, "memory: list_channels: NULL argument");
        struct mem_opener *o = opener_from_base(base);
        pthread_mutex_lock(&o->lock);
        size_t n = o->n_logs;
        /* Logs are never removed before the opener closes, so their names stay valid. */
        const char **names = calloc(n ? n : 1, sizeof(*names));
        if (!names) {
                pthread_mutex_unlock(&o->lock);
                return wal_error_set(reterr, -ENOMEM, 0, "memory: list_channels: out of memory");
        }
        for (size_t i = 0; i < n; i++)
                names[i] = o->logs[i]->channel;
        pthread_mutex_unlock(&o->lock);
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = fn(arg, names[i]);
        free(names);
        return r;
}

static void mem_opener_close(struct walimpls_opener *base)
{
        if (!base)
                return;
        struct mem_opener *o = opener_from_base(base);
        for (size_t i = 0; i < o->n_logs; i++)
                log_free(o->logs[i]);
        free(o->logs);
        pthread_mutex_destroy(&o->lock);
        free(o);
}

static const struct walimpls_opener_ops mem_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = mem_open,
        .list_channels = mem_list_channels,
        .close = mem_opener_close,
};

/* ---- WAL: append and completions ---- */

static bool wal_fenced(const struct mem_wal *w)
{
        return atomic_load(&w->log->owner_gen) != w->gen;
}

/* Room for one more entry in @q: 0 or -ENOMEM. */
static int queue_reserve(struct mem_queue *q)
{
        if (q->n == q->cap) {
                size_t ncap = q->cap ? q->cap * 2 : 64;
                struct mem_pending *nv = realloc(q->v, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                q->v = nv;
                q->cap = ncap;
        }
        return 0;
}

/*
 * memory.completion=inline: commit @copy (frozen, one reference, taken over)
 * into the log and run its completion before returning.  The ID is assigned
 * under the log lock, which also orders the commits, so IDs follow the order
 * of returns and the log stays sorted.
 */
static int append_inline(struct mem_wal *w, wal_msg *copy, walimpls_append_done_fn *done,
                         void *arg)
{
        struct mem_log *l = w->log;
        pthread_mutex_lock(&l->lock);
        int r = wal_fenced(w) ? -ESTALE : log_reserve(l, 1);
        uint64_t seq = 0;
        if (r == 0) {
                seq = atomic_fetch_add(&l->next_seq, 1);
                r = wal_msg_freeze(copy, WAL_MSGID(0, seq));
        }
        if (r < 0) {
                pthread_mutex_unlock(&l->lock);
                wal_msg_unref(copy);
                return r;
        }
        WAL_ASSERT(l->tail == l->head || l->ents[l->tail - 1].seq < seq);
        l->ents[l->tail++] = (struct mem_entry){ seq, copy };
        l->bytes += (int64_t)wal_msg_size(copy);
        log_wake_scanners(l);
        pthread_mutex_unlock(&l->lock);
        done(arg, 0, WAL_MSGID(0, seq), NULL);
        return 0;
}

/*
 * Append @msg: a frozen copy of it is stored (append), or @msg itself,
 * frozen here (append_take, @take; borrowed, a reference is taken).
 * Inline, or queued for the completion thread with its ID assigned here,
 * under qlock, so IDs follow the order of returns.  On an error @msg is
 * left as it was.
 */
static int append_common(struct walimpls_wal *base, wal_msg *msg, walimpls_append_done_fn *done,
                         void *arg, bool take)
{
        if (!base || !msg || !done)
                return -EINVAL;
        struct mem_wal *w = wal_from_base(base);
        if (w->base.access != WAL_ACCESS_RW)
                return -EROFS;
        if (wal_fenced(w))
                return -ESTALE;
        if (take && wal_msg_is_immutable(msg))
                return -EINVAL;
        wal_msg *copy;
        int r = take ? (copy = wal_msg_ref(msg), 0) : wal_msg_copy_in(w->log->arena, msg, &copy);
        if (r < 0)
                return r;
        if (!w->has_thread)
                return append_inline(w, copy, done, arg);
        pthread_mutex_lock(&w->qlock);
        if (w->closing) {
                pthread_mutex_unlock(&w->qlock);
                wal_msg_unref(copy);
                return -ESHUTDOWN;
        }
        r = queue_reserve(&w->q);
        if (r == 0) {
                uint64_t seq = atomic_fetch_add(&w->log->next_seq, 1);
                r = wal_msg_freeze(copy, WAL_MSGID(0, seq));
                WAL_ASSERT(r == 0);
                w->q.v[w->q.n++] = (struct mem_pending){ copy, done, arg };
        }
        if (r < 0) {
                pthread_mutex_unlock(&w->qlock);
                wal_msg_unref(copy);
                return r;
        }
        bool wake = !w->busy;
        if (wake)
                w->busy = true;
        pthread_mutex_unlock(&w->qlock);
        if (wake)
                pthread_cond_signal(&w->qcond);
        return 0;
}

static int mem_append(struct walimpls_wal *base, wal_msg *msg, walimpls_append_done_fn *done,
                      void *arg)
{
        return append_common(base, msg, done, arg, false);
}

/* The adaptor's own message, kept as the record (walimpls.h). */
static int mem_append_take(struct walimpls_wal *base, wal_msg *msg,
                           walimpls_append_done_fn *done, void *arg)
{
        return append_common(base, msg, done, arg, true);
}

/*
 * Commit a batch into the log.  Returns 0, or -ESTALE (fenced) /
 * -ENOMEM for the whole batch.  On success the log holds the references.
 */
static int commit_batch(struct mem_wal *w, struct mem_queue *b)
{
        struct mem_log *l = w->log;
        pthread_mutex_lock(&l->lock);
        int r = wal_fenced(w) ? -ESTALE : log_reserve(l, b->n);
        if (r == 0) {
                for (size_t i = 0; i < b->n; i++) {
                        uint64_t seq = wal_msg_id(b->v[i].msg).lo;
                        WAL_ASSERT(l->tail == l->head || l->ents[l->tail - 1].seq < seq);
                        l->ents[l->tail++] = (struct mem_entry){ seq, wal_msg_ref(b->v[i].msg) };
                        l->bytes += (int64_t)wal_msg_size(b->v[i].msg);
                }
                log_wake_scanners(l);
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

/* Run every completion of @b with @status (0: real IDs) and empty it. */
static void complete_batch(struct mem_queue *b, int status)
{
        for (size_t i = 0; i < b->n; i++) {
                struct mem_pending *p = &b->v[i];
                struct wal_msgid id = status == 0 ? wal_msg_id(p->msg) : WAL_MSGID_NONE;
                p->done(p->arg, status, id, NULL);
                wal_msg_unref(p->msg);
        }
        b->n = 0;
}

static void *completion_thread(void *arg)
{
        struct mem_wal *w = arg;
        pthread_setname_np(pthread_self(), "wal-mem-done");
        pthread_mutex_lock(&w->qlock);
        for (;;) {
                while (w->q.n == 0 && !w->closing) {
                        w->busy = false;
                        pthread_cond_wait(&w->qcond, &w->qlock);
                }
                w->busy = true;
                /* Swap the queue out: appends keep going into the other array. */
                struct mem_queue batch = w->q;
                w->q = w->spare;
                w->spare = (struct mem_queue){ 0 };
                bool closing = w->closing;
                pthread_mutex_unlock(&w->qlock);

                int status = closing ? -ECANCELED : commit_batch(w, &batch);
                complete_batch(&batch, status);

                pthread_mutex_lock(&w->qlock);
                if (closing && w->q.n == 0) {
                        free(w->q.v);
                        w->q = batch;
                        break;
                }
                free(w->spare.v);
                w->spare = batch;
        }
        pthread_mutex_unlock(&w->qlock);
        return NULL;
}

/* ---- WAL: read, truncate, info, close ---- */

static int mem_read(struct walimpls_wal *base, const struct walimpls_read_opts *opts,
                    struct walimpls_scanner **ret, wal_error **reterr)
{
        if (!base || !opts || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "memory: read: NULL argument");
        struct mem_wal *w = wal_from_base(base);
        struct mem_log *l = w->log;
        const struct wal_deliver *d = &opts->deliver;
        if (d->policy != WAL_DELIVER_ALL && d->policy != WAL_DELIVER_LATEST &&
            d->policy != WAL_DELIVER_START_FROM && d->policy != WAL_DELIVER_START_AFTER)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "memory: read %s: unsupported deliver policy %d",
                                     w->base.channel, (int)d->policy);
        if ((d->policy == WAL_DELIVER_START_FROM || d->policy == WAL_DELIVER_START_AFTER) &&
            wal_msgid_is_none(d->id))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "memory: read %s: start ID is WAL_MSGID_NONE",
                                     w->base.channel);

        struct mem_scanner *s = calloc(1, sizeof(*s));
        if (!s)
                return wal_error_set(reterr, -ENOMEM, 0, "memory: read: out of memory");
        int r = walimpls_scanner_init(&s->base, &mem_scanner_ops, base, opts->name);
        if (r < 0) {
                free(s);
                return wal_error_set(reterr, r, 0, "memory: read: out of memory");
        }
        r = walimpls_notifier_init(&s->notifier);
        if (r < 0) {
                walimpls_scanner_done(&s->base);
                free(s);
                return wal_error_set(reterr, r, 0, "memory: read %s: cannot make notifier",
                                     w->base.channel);
        }
        s->log = l;
        atomic_init(&s->interrupted, false);

        pthread_mutex_lock(&l->lock);
        switch (d->policy) {
        case WAL_DELIVER_ALL:
                s->pos = l->head < l->tail ? l->ents[l->head].seq : l->trunc_seq + 1;
                break;
        case WAL_DELIVER_LATEST:
                s->pos = atomic_load(&l->next_seq);
                break;
        case WAL_DELIVER_START_FROM:
                s->pos = d->id.hi ? UINT64_MAX : d->id.lo;
                break;
        default: /* START_AFTER */
                s->pos = d->id.hi || d->id.lo == UINT64_MAX ? UINT64_MAX : d->id.lo + 1;
                break;
        }
        if (l->trunc_seq > 0 && s->pos <= l->trunc_seq) {
                uint64_t t = l->trunc_seq;
                pthread_mutex_unlock(&l->lock);
                walimpls_notifier_done(&s->notifier);
                walimpls_scanner_done(&s->base);
                free(s);
                return wal_error_set(reterr, -ERANGE, 0,
                                     "memory: read %s: start position %llu was truncated "
                                     "(everything <= %llu is deleted)",
                                     w->base.channel, (unsigned long long)d->id.lo,
                                     (unsigned long long)t);
        }
        if (l->n_scanners == l->cap_scanners) {
                size_t ncap = l->cap_scanners ? l->cap_scanners * 2 : 4;
                struct mem_scanner **nv = realloc(l->scanners, ncap * sizeof(*nv));
                if (!nv) {
                        pthread_mutex_unlock(&l->lock);
                        walimpls_notifier_done(&s->notifier);
                        walimpls_scanner_done(&s->base);
                        free(s);
                        return wal_error_set(reterr, -ENOMEM, 0, "memory: read: out of memory");
                }
                l->scanners = nv;
                l->cap_scanners = ncap;
        }
        l->scanners[l->n_scanners++] = s;
        pthread_mutex_unlock(&l->lock);
        *ret = &s->base;
        return 0;
}

static int mem_truncate(struct walimpls_wal *base, struct wal_msgid id, wal_error **reterr)
{
        if (!base)
                return wal_error_set(reterr, -EINVAL, 0, "memory: truncate: NULL wal");
        struct mem_wal *w = wal_from_base(base);
        if (w->base.access != WAL_ACCESS_RW)
                return wal_error_set(reterr, -EROFS, 0, "memory: truncate %s: read-only wal",
                                     w->base.channel);
        if (wal_msgid_is_none(id))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "memory: truncate %s: ID is WAL_MSGID_NONE", w->base.channel);
        if (wal_fenced(w))
                return wal_error_set(reterr, -ESTALE, WAL_ERROR_FATAL,
                                     "memory: truncate %s: fenced by a newer open",
                                     w->base.channel);
        struct mem_log *l = w->log;
        uint64_t upto = id.hi ? UINT64_MAX : id.lo;
        pthread_mutex_lock(&l->lock);
        if (l->head < l->tail) {
                /* Only committed messages can be deleted: clamp to the last one. */
                uint64_t last = l->ents[l->tail - 1].seq;
                if (upto > last)
                        upto = last;
                size_t end = log_lower_bound(l, upto + 1);
                for (size_t i = l->head; i < end; i++) {
                        l->bytes -= (int64_t)wal_msg_size(l->ents[i].msg);
                        wal_msg_unref(l->ents[i].msg);
                }
                l->removed += end - l->head;
                l->head = end;
                if (l->head == l->tail)
                        l->head = l->tail = 0;
                if (upto > l->trunc_seq)
                        l->trunc_seq = upto;
                log_wake_scanners(l);
        }
        pthread_mutex_unlock(&l->lock);
        return 0;
}

static int mem_info(struct walimpls_wal *base, struct walimpls_info *ret, wal_error **reterr)
{
        if (!base || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "memory: info: NULL argument");
        struct mem_wal *w = wal_from_base(base);
        struct mem_log *l = w->log;
        pthread_mutex_lock(&l->lock);
        bool empty = l->head == l->tail;
        *ret = (struct walimpls_info){
                .first_id = empty ? WAL_MSGID_NONE : wal_msg_id(l->ents[l->head].msg),
                .last_id = empty ? WAL_MSGID_NONE : wal_msg_id(l->ents[l->tail - 1].msg),
                .count = (int64_t)(l->tail - l->head),
                .bytes = l->bytes,
                .term = l->term,
                .durability = mem_durability,
        };
        pthread_mutex_unlock(&l->lock);
        return 0;
}

static void mem_wal_close(struct walimpls_wal *base)
{
        if (!base)
                return;
        struct mem_wal *w = wal_from_base(base);
        if (w->has_thread) {
                pthread_mutex_lock(&w->qlock);
                w->closing = true;
                pthread_mutex_unlock(&w->qlock);
                pthread_cond_signal(&w->qcond);
                pthread_join(w->thread, NULL);
        }
        /* The thread ran every completion; nothing can be left. */
        WAL_ASSERT(w->q.n == 0 && w->spare.n == 0);
        free(w->q.v);
        free(w->spare.v);
        pthread_cond_destroy(&w->qcond);
        pthread_mutex_destroy(&w->qlock);
        walimpls_wal_done(&w->base);
        free(w);
}

static const struct walimpls_wal_ops mem_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = mem_append,
        .read = mem_read,
        .truncate = mem_truncate,
        .info = mem_info,
        .close = mem_wal_close,
        .append_take = mem_append_take,
};

/* ---- Scanner ---- */

/*
 * Index in l->ents of the first entry with seq >= s->pos.  A tailing scanner
 * hits its hint (the logical index after the last delivered entry) in O(1);
 * otherwise binary search.  Caller holds l->lock.
 */
static size_t scanner_index(const struct mem_scanner *s, const struct mem_log *l)
{
        if (s->hint >= l->removed) {
                size_t i = l->head + (size_t)(s->hint - l->removed);
                if (i >= l->tail) {
                        if (l->head == l->tail || l->ents[l->tail - 1].seq < s->pos)
                                return l->tail;
                } else if (l->ents[i].seq >= s->pos &&
                           (i == l->head || l->ents[i - 1].seq < s->pos)) {
                        return i;
                }
        }
        return log_lower_bound(l, s->pos);
}

/*
 * Look for the next message.  0 with *ret referenced, -EAGAIN nothing yet,
 * -ERANGE the position was truncated away.
 */
static int scanner_try(struct mem_scanner *s, wal_msg **ret)
{
        struct mem_log *l = s->log;
        int r = -EAGAIN;
        pthread_mutex_lock(&l->lock);
        if (l->trunc_seq > 0 && s->pos <= l->trunc_seq) {
                r = -ERANGE;
        } else {
                size_t i = scanner_index(s, l);
                if (i < l->tail) {
                        uint64_t seq = l->ents[i].seq;
                        s->pos = seq == UINT64_MAX ? UINT64_MAX : seq + 1;
                        s->hint = l->removed + (i - l->head) + 1;
                        *ret = wal_msg_ref(l->ents[i].msg);
                        r = 0;
                }
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

static int mem_next(struct walimpls_scanner *base, int timeout_ms, wal_msg **ret,
                    wal_error **reterr)
{
        if (!base || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "memory: next: NULL argument");
        struct mem_scanner *s = scanner_from_base(base);
        uint64_t deadline = timeout_ms > 0
                ? walu_monotonic_ns() + (uint64_t)timeout_ms * 1000000u : 0;
        for (;;) {
                if (atomic_load(&s->interrupted))
                        return -ECANCELED;
                uint64_t seen = walimpls_notifier_seq(&s->notifier);
                int r = scanner_try(s, ret);
                if (r == -EAGAIN) {
                        /* Drain, then look again: a commit racing with the
                         * drain either shows up now or leaves the fd readable. */
                        walimpls_notifier_drain(&s->notifier);
                        r = scanner_try(s, ret);
                }
                if (r == 0)
                        return 0;
                if (r == -ERANGE)
                        return wal_error_set(reterr, -ERANGE, 0,
                                             "memory: scanner '%s' on %s: position %llu was "
                                             "truncated away",
                                             s->base.name, s->log->channel,
                                             (unsigned long long)s->pos);
                int wait_ms = timeout_ms;
                if (timeout_ms > 0) {
                        uint64_t now = walu_monotonic_ns();
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        wait_ms = (int)((deadline - now + 999999u) / 1000000u);
                } else if (timeout_ms == 0) {
                        return -ETIMEDOUT;
                }
                r = walimpls_notifier_wait(&s->notifier, seen, wait_ms);
                if (r == -ECANCELED)
                        return -ECANCELED;
                /* 0 or -ETIMEDOUT: look again; the deadline check ends the loop. */
        }
}

static void mem_interrupt(struct walimpls_scanner *base)
{
        if (!base)
                return;
        struct mem_scanner *s = scanner_from_base(base);
        atomic_store(&s->interrupted, true);
        walimpls_notifier_interrupt(&s->notifier);
}

static int mem_fd(struct walimpls_scanner *base)
{
        if (!base)
                return -EINVAL;
        return scanner_from_base(base)->notifier.efd;
}

static void mem_scanner_close(struct walimpls_scanner *base)
{
        if (!base)
                return;
        struct mem_scanner *s = scanner_from_base(base);
        struct mem_log *l = s->log;
        pthread_mutex_lock(&l->lock);
        for (size_t i = 0; i < l->n_scanners; i++)
                if (l->scanners[i] == s) {
                        l->scanners[i] = l->scanners[--l->n_scanners];
                        break;
                }
        pthread_mutex_unlock(&l->lock);
        walimpls_notifier_done(&s->notifier);
        walimpls_scanner_done(&s->base);
        free(s);
}

static const struct walimpls_scanner_ops mem_scanner_ops = {
        .version = WALIMPLS_VERSION,
        .next = mem_next,
        .interrupt = mem_interrupt,
        .fd = mem_fd,
        .close = mem_scanner_close,
};
