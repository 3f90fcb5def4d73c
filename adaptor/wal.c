/* SPDX-License-Identifier: MIT */
/*
 * adaptor/wal.c: one channel at one term on top of a walimpls wal.
 *
 * Append path.  wal_append() copies the caller's message into an append op
 * and runs the interceptor chain (user interceptors, then retry, validate,
 * timetick, metrics).  The last step, under the append lock taken by
 * timetick, links the op at the tail of the pending list and calls the
 * backend's append; the SPI assigns IDs in call order, so the pending list,
 * the ticks and the IDs share one order.  Backend completions only mark
 * their op (a backend that brackets a run of completions with
 * walimpls_done_batch_begin/end gets one drain at the end of the run); a
 * single drainer at a time pops the completed prefix of the
 * pending list, which is exactly the durable prefix of the append sequence:
 * each success is frozen into an immutable message, pushed into the
 * write-ahead cache and reported to scanners, then handed to the wal's
 * dispatcher thread, which runs the interceptors' done hooks and the
 * callback.  An append with no callback and no user interceptor's done hook
 * gives the dispatcher nothing to do: the drainer finishes it itself (the
 * built-in hooks, transaction bookkeeping, recycling the op), without waking
 * the dispatcher.  Callbacks therefore run in ID order (a retried append rejoins
 * the order with its new ID), and a tailing scanner sees a message as soon
 * as it and everything before it are durable, without waiting for a
 * periodic tick.  Callbacks never run on a backend thread: a callback that
 * appends may wait for the append lock, held by a thread the backend is
 * holding back (back-pressure) until its own thread completes more; on the
 * backend's thread that would deadlock.
 *
 * Blocking appends (wal_append_wait) queue the append like any other, then
 * call the backend's flush (wal.flush, where it has one: the local backend
 * then writes and syncs a lone appender's record on the caller's thread),
 * then wait.  The outcome does not travel through the dispatcher when it
 * need not: a caller whose op heads the completion queue while nobody runs
 * completions runs that op's hooks itself (see "Dispatcher"), so a lone
 * blocking appender on local pays no thread hand-off at all.
 *
 * Lifetime.  Public calls enter the wal's lifetime gate.  wal close: refuse
 * new calls, stop the background thread, wait for calls inside, close the
 * scanners, close the backend wal (which completes every append in flight,
 * with its outcome or -ECANCELED; no retries once closing), cancel queued
 * retries, run the interceptors' close hooks, release the cache.  The
 * struct itself is reference counted (owner, opener's list, scanners,
 * transactions) and freed with the last reference.
 *
 * Background thread (read-write only): queued retries when due, the
 * periodic time tick (timetick.interval, only when something was appended
 * since the last one, so an idle log stays idle), rollback of expired
 * transactions, and age eviction of the cache.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"
#include "wal/message-internal.h"
#include "wal/wal-log.h"

static _Thread_local int tls_in_backend_append;
/* The op whose backend append this thread is in (wal_backend_append()), and
 * whether its completion came inline and left its count to the appender. */
static _Thread_local struct wal_append_op *tls_appending;
static _Thread_local bool tls_count_left;
/* Append callbacks and done hooks running on this thread: a blocking append
 * there would wait for a completion that runs only after they return. */
static _Thread_local int tls_in_callback;

static void drain(wal *w);
static bool drain_rounds(wal *w, size_t *n_popped, bool settling);
static void ask_dispatcher_to_drain(wal *w);

/* ---- Reference counting ---- */

/*
 * New ops come in slabs of OP_SLAB, faulted in at once.  With callbacks
 * and a reader spinning on the other CPU, the dispatcher (which frees the
 * ops) may wait for a CPU for milliseconds while the appender goes on, so
 * the appender keeps finding the pool empty and needs new ops: up to about
 * 2,000 in a run of 20,000 appends (bench-api --workload deliver, stage
 * probe, session 8, tools/bench/adaptor-notes.md).  One allocation each
 * handed out untouched heap pages, and zeroing every 16th or 21st new op
 * took a first-touch fault (about 2 us here): about half of the slowest
 * 1 % of append-to-delivery times.  A slab's pages are faulted in
 * together (walu_populate()), so one append in OP_SLAB new ops pays for
 * all of them.  Slab ops always go back to the pool (they are never
 * free()d alone) and the slabs are freed with the wal; like the pool, they
 * hold no more ops than were once in flight together.
 */
#define OP_SLAB 128

struct wal_op_slab {
        struct wal_op_slab *next;
        struct wal_append_op ops[OP_SLAB];
};

static void wal_free(wal *w)
{
        if (w->has_cache)
                wal_cache_done(&w->cache);
        struct wal_append_op *spare = atomic_load(&w->op_spare);
        if (spare)
                spare->next = NULL;
        struct wal_append_op *lists[3] = { w->pool_mine, atomic_load(&w->pool_free), spare };
        for (int i = 0; i < 3; i++) {
                while (lists[i]) {
                        struct wal_append_op *op = lists[i];
                        lists[i] = op->next;
                        if (!op->in_slab)
                                free(op);
                }
        }
        while (w->op_slabs) {
                struct wal_op_slab *sl = w->op_slabs;
                w->op_slabs = sl->next;
                free(sl);
        }
        wal_msg_arena_free(w->arena);
        for (size_t i = 0; i < w->n_chain; i++)
                free(w->chain[i].name);
        free(w->chain);
        free(w->scanners);
        free(w->channel);
        pthread_mutex_destroy(&w->append_lock);
        pthread_mutex_destroy(&w->tick_lock);
        pthread_cond_destroy(&w->tick_cond);
        pthread_mutex_destroy(&w->scan_lock);
        pthread_mutex_destroy(&w->cb_lock);
        pthread_cond_destroy(&w->cb_cond);
        wal_life_done(&w->life);
        wal_opener *o = w->opener;
        free(w);
        wal_opener_unref_internal(o);
}

bool wal_adaptor_in_callback(void)
{
        return tls_in_callback > 0;
}

void wal_unref_internal(wal *w)
{
        if (w && atomic_fetch_sub(&w->refs, 1) == 1)
                wal_free(w);
}

/* ---- Completion ---- */

/* Ops are recycled through a per-wal pool: they are allocated by the
 * appending thread and released by the dispatcher, and a free() on another
 * thread than the malloc() contends for the allocator's arena lock on every
 * append.  The two sides share no lock: finishers push onto pool_free (a
 * lock-free stack, push only), appenders take the whole stack at once when
 * their own list (pool_mine, under append_lock) runs dry.
 *
 * An append takes its op with one exchange of op_spare, no lock: the
 * append before it, under append_lock, left the next op there
 * (op_refill_spare(), called by wal_backend_append()).  Only append_lock's
 * holder stores into op_spare, and only when it finds it empty; takers only
 * empty it, so a refill never overwrites an op.  When op_spare is empty (the
 * first append, or appenders racing for it), the taker pops pool_mine under
 * append_lock.  No op_alloc() runs with append_lock held: the chain takes it
 * (timetick) after the op is allocated, and callbacks run outside it. */
#define OP_POOL_MAX 4096

/* The next op off pool_mine (refilled from pool_free), or NULL.
 * append_lock held. */
static struct wal_append_op *pool_pop(wal *w)
{
        struct wal_append_op *op = w->pool_mine;
        if (!op) {
                op = atomic_exchange_explicit(&w->pool_free, NULL, memory_order_acquire);
                atomic_fetch_sub_explicit(&w->pool_size, w->pool_taken, memory_order_relaxed);
                w->pool_taken = 0;
        }
        if (op) {
                w->pool_mine = op->next;
                /* pool_size is counted down in steps, so the finishers'
                 * line is not written at every allocation */
                if (++w->pool_taken == 16) {
                        atomic_fetch_sub_explicit(&w->pool_size, 16, memory_order_relaxed);
                        w->pool_taken = 0;
                }
        }
        return op;
}

/* wal_backend_append(), append_lock held: an op for the next append. */
static void op_refill_spare(wal *w)
{
        if (atomic_load_explicit(&w->op_spare, memory_order_relaxed))
                return;
        struct wal_append_op *op = pool_pop(w);
        if (op)
                atomic_store_explicit(&w->op_spare, op, memory_order_release);
}

/* append_lock held, the pool empty: a new slab's ops become pool_mine
 * (counted in pool_size).  False if out of memory. */
static bool op_slab_new(wal *w)
{
        struct wal_op_slab *sl = aligned_alloc(alignof(struct wal_op_slab), sizeof(*sl));
        if (!sl)
                return false;
        walu_populate(sl, sizeof(*sl));
        sl->next = w->op_slabs;
        w->op_slabs = sl;
        for (size_t i = 0; i < OP_SLAB; i++) {
                sl->ops[i].in_slab = true;
                sl->ops[i].next = i + 1 < OP_SLAB ? &sl->ops[i + 1] : w->pool_mine;
        }
        w->pool_mine = &sl->ops[0];
        atomic_fetch_add_explicit(&w->pool_size, OP_SLAB, memory_order_relaxed);
        return true;
}

static struct wal_append_op *op_alloc(wal *w)
{
        struct wal_append_op *op = atomic_exchange_explicit(&w->op_spare, NULL,
                                                            memory_order_acquire);
        if (!op) {
                pthread_mutex_lock(&w->append_lock);
                op = pool_pop(w);
                if (!op && op_slab_new(w))
                        op = pool_pop(w);
                pthread_mutex_unlock(&w->append_lock);
        }
        bool in_slab = op && op->in_slab;
        if (!op) {
                op = aligned_alloc(alignof(struct wal_append_op), sizeof(*op));
                if (!op)
                        return NULL;
        }
        memset(op, 0, sizeof(*op));
        op->in_slab = in_slab;
        return op;
}

static void op_free(struct wal_append_op *op)
{
        wal *w = op->w;
        wal_msg_unref(op->msg);
        wal_msg_unref(op->sent);
        wal_msg_unref(op->result);
        wal_error_free(op->err);
        if (!op->in_slab &&
            atomic_load_explicit(&w->pool_size, memory_order_relaxed) >= OP_POOL_MAX) {
                free(op);
                return;
        }
        atomic_fetch_add_explicit(&w->pool_size, 1, memory_order_relaxed);
        struct wal_append_op *head = atomic_load_explicit(&w->pool_free, memory_order_relaxed);
        do
                op->next = head;
        while (!atomic_compare_exchange_weak_explicit(&w->pool_free, &head, op,
                                                      memory_order_release,
                                                      memory_order_relaxed));
}

/* ---- The durable prefix's end (sequence lock; one writer, the drainer) ---- */

static void set_durable_id(wal *w, struct wal_msgid id)
{
        unsigned s = atomic_load_explicit(&w->durable_seq, memory_order_relaxed);
        atomic_store_explicit(&w->durable_seq, s + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&w->durable_hi, id.hi, memory_order_relaxed);
        atomic_store_explicit(&w->durable_lo, id.lo, memory_order_relaxed);
        atomic_store_explicit(&w->durable_seq, s + 2, memory_order_release);
}

struct wal_msgid wal_durable_id(wal *w)
{
        for (;;) {
                unsigned s = atomic_load_explicit(&w->durable_seq, memory_order_acquire);
                struct wal_msgid id = {
                        atomic_load_explicit(&w->durable_hi, memory_order_relaxed),
                        atomic_load_explicit(&w->durable_lo, memory_order_relaxed),
                };
                atomic_thread_fence(memory_order_acquire);
                if (!(s & 1) && atomic_load_explicit(&w->durable_seq, memory_order_relaxed) == s)
                        return id;
                wal_cpu_relax();
        }
}

/* A clock reading shared by the outcomes reported together (a list run by
 * finish_list()): read when the first of them needs it, again after
 * CLOCK_SHARE of them.  A read costs 80-100 ns on this project's VMs,
 * nearly half of what the dispatcher spends on an outcome otherwise. */
#define CLOCK_SHARE 32

struct shared_clock {
        uint64_t now;
        unsigned uses;
};

/* Nanoseconds since @start (a walu_cycles() reading), with @clk's reading
 * (NULL: a reading of its own). */
static uint64_t latency_since(uint64_t start, struct shared_clock *clk)
{
        uint64_t now;
        if (!clk) {
                now = walu_cycles();
        } else {
                if (clk->uses++ % CLOCK_SHARE == 0)
                        clk->now = walu_cycles();
                now = clk->now;
        }
        return walu_cycles_to_ns(start, now);
}

/* Report the final outcome of @op (hooks innermost first, then the callback)
 * and free it; its latency is read from @clk (see latency_since()).  No
 * lock held. */
static void op_finish(wal *w, struct wal_append_op *op, int status, const wal_msg *msg,
                      struct shared_clock *clk)
{
        if (status < 0 && !op->err)
                op->err = wal_error_new(status, 0, "append to \"%s\" failed: %s", w->channel,
                                        wal_strerror(status));
        struct wal_append_result res = {
                .status = status,
                .msg = msg,
                .err = op->err,
                .latency_ns = latency_since(op->t_start, clk),
                .attempts = op->attempts,
        };
        tls_in_callback++;
        for (size_t i = op->depth; i-- > 0;) {
                struct wal_chain_link *l = &w->chain[i];
                if (l->builtin_done)
                        l->builtin_done(w, op, &res);
                else if (!l->builtin && l->ic.done)
                        l->ic.done(l->ic.arg, w, &res);
        }
        if (op->done)
                op->done(op->userdata, status, msg, op->err);
        /* A transaction's last body may start its commit here, whose
         * refusal runs the commit's callback: still counted as a callback. */
        if (op->txn && wal_msg_type(op->msg) == WAL_MSG_DATA)
                wal_txn_body_finished(op->txn, status);
        tls_in_callback--;
        op_free(op);
}

/* ---- Blocking appends: the waiter ---- */

/* A blocking append's rendezvous with the completion path.  @state moves
 * WAITING -> HANDED (the queue's head run was given to this caller to run,
 * under cb_lock), WAITING -> ABANDONED (the caller timed out and left) or
 * anything -> DONE (waiter_done ran: the outcome is in the fields). */
enum { WT_WAITING = 0, WT_HANDED, WT_DONE, WT_ABANDONED };

struct waiter {
        atomic_int refs;
        atomic_uint state;                 /* WT_*; the futex word the caller sleeps on */
        atomic_int sleeping;               /* the caller is (about to be) in futex_wait */
        struct wal_append_op *run;         /* HANDED: ops to finish, in order */
        int status;
        wal_msg *msg;
        wal_error *err;
};

static void waiter_unref(struct waiter *wt)
{
        if (atomic_fetch_sub(&wt->refs, 1) != 1)
                return;
        wal_msg_unref(wt->msg);
        wal_error_free(wt->err);
        free(wt);
}

/* Store, then wake the caller only if it sleeps (a caller running the
 * completion on its own thread is not woken at all). */
static void waiter_post(struct waiter *wt, unsigned state)
{
        atomic_store(&wt->state, state);
        if (atomic_load(&wt->sleeping))
                wal_futex_wake_all(&wt->state);
}

/* The callback of a blocking append (runs as every callback does, once). */
static void waiter_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct waiter *wt = arg;
        wt->status = status;
        wt->msg = msg ? wal_msg_ref((wal_msg *)msg) : NULL;
        wt->err = err ? wal_error_copy(err) : NULL;
        waiter_post(wt, WT_DONE);
        waiter_unref(wt);
}

static bool op_is_wait(const struct wal_append_op *op)
{
        return op->done == waiter_done;
}

/* ---- Dispatcher ---- */

/*
 * Finished ops are queued in ID order on cb_head and run (done hooks, then
 * the callback) by one thread at a time, the holder of cb_busy: normally
 * the dispatcher thread.  A blocking append's caller has nothing to do but
 * wait for its own op, and handing the op to the dispatcher and the
 * outcome back costs two thread wake-ups; so when the queue starts with
 * blocking appends and nobody is running ops, the caller of the first one
 * gets cb_busy and that run of blocking appends (hand_to_waiter) and runs
 * them on its own thread, in order, then gives cb_busy back.  Hooks thus
 * still run one at a time and in ID order, user callbacks still only on
 * the dispatcher thread, and nothing runs inside wal_append(): the caller
 * runs them in wal_append_wait(), after its append returned.
 */

struct op_list {
        struct wal_append_op *head, *tail;
};

/* Queue @op's final outcome (@status, and @result: a reference, taken over)
 * on @l, for dispatch_list(). */
static void op_list_add(struct op_list *l, struct wal_append_op *op, int status, wal_msg *result)
{
        op->status = status;
        op->result = result;
        op->next = NULL;
        if (l->tail)
                l->tail->next = op;
        else
                l->head = op;
        l->tail = op;
}

/* Whether @op's outcome needs the dispatcher: a callback (user code, never
 * run inside wal_append() nor on a backend thread) or a user interceptor's
 * done hook (run one at a time, in callback order).  Built-in hooks and the
 * bookkeeping of a transaction's bodies need neither. */
static bool op_needs_dispatch(const wal *w, const struct wal_append_op *op)
{
        return op->done || (w->user_done_hooks && op->depth > 0);
}

/* Hand @op's final outcome on: queued on @l for the dispatcher, or, when it
 * needs none, finished here, at once (no wake-up). */
static void op_out(wal *w, struct op_list *l, struct wal_append_op *op, int status,
                   wal_msg *result)
{
        if (op_needs_dispatch(w, op)) {
                op_list_add(l, op, status, result);
                return;
        }
        op_finish(w, op, status, result, NULL);
        wal_msg_unref(result);
}

/* Run a list of queued outcomes, in order. */
static void finish_list(wal *w, struct wal_append_op *op)
{
        struct shared_clock clk = { 0 };
        while (op) {
                struct wal_append_op *next = op->next;
                op->next = NULL;
                wal_msg *result = op->result;
                op->result = NULL;
                op_finish(w, op, op->status, result, &clk);
                wal_msg_unref(result);
                op = next;
        }
}

/* With cb_lock held and nobody running ops: if the queue starts with a
 * blocking append whose caller still waits, give that caller cb_busy and
 * the run of blocking appends at the head of the queue.  Returns the
 * caller to wake (a reference: pass it to waiter_wake()), or NULL. */
static struct waiter *hand_to_waiter(wal *w)
{
        struct wal_append_op *first = w->cb_head;
        if (w->cb_busy || !first || !op_is_wait(first))
                return NULL;
        struct wal_append_op *last = first;
        while (last->next && op_is_wait(last->next))
                last = last->next;
        struct waiter *wt = first->userdata;
        atomic_fetch_add(&wt->refs, 1);
        /* Cut the run off the queue before the caller can see it: once
         * HANDED, it may be walking the run at once. */
        struct wal_append_op *rest = last->next;
        last->next = NULL;
        wt->run = first;
        unsigned expect = WT_WAITING;
        if (!atomic_compare_exchange_strong(&wt->state, &expect, WT_HANDED)) {
                /* It gave up waiting: the dispatcher runs the op. */
                wt->run = NULL;
                last->next = rest;
                waiter_unref(wt);
                return NULL;
        }
        w->cb_head = rest;
        if (!rest)
                w->cb_tail = NULL;
        w->cb_busy = true;
        return wt;
}

static void waiter_wake(struct waiter *wt)
{
        if (!wt)
                return;
        if (atomic_load(&wt->sleeping))
                wal_futex_wake_all(&wt->state);
        waiter_unref(wt);
}

/* Hand a list of outcomes over (one wake-up for all of them): to a waiting
 * blocking appender (see above) or the dispatcher; without a dispatcher
 * (not started, or stopped) finish them here. */
static void dispatch_list(wal *w, struct op_list *l)
{
        if (!l->head)
                return;
        pthread_mutex_lock(&w->cb_lock);
        if (w->cb_running) {
                if (w->cb_tail)
                        w->cb_tail->next = l->head;
                else
                        w->cb_head = l->head;
                w->cb_tail = l->tail;
                atomic_fetch_add_explicit(&w->cb_queued, 1, memory_order_release);
                struct waiter *wt = hand_to_waiter(w);
                /* Busy: its holder picks the queue up when it is done. */
                if (!wt && !w->cb_busy && w->cb_sleeping)
                        pthread_cond_signal(&w->cb_cond);
                pthread_mutex_unlock(&w->cb_lock);
                waiter_wake(wt);
                return;
        }
        pthread_mutex_unlock(&w->cb_lock);
        finish_list(w, l->head);
}

static void dispatch(wal *w, struct wal_append_op *op, int status, wal_msg *result)
{
        struct op_list l = { 0 };
        op_list_add(&l, op, status, result);
        dispatch_list(w, &l);
}

/* A blocking appender handed a run: finish it, then give cb_busy back
 * (and the rest of the queue to the next waiting appender or the
 * dispatcher). */
static void waiter_run(wal *w, struct waiter *wt)
{
        struct wal_append_op *run = wt->run;
        wt->run = NULL;
        finish_list(w, run);
        pthread_mutex_lock(&w->cb_lock);
        w->cb_busy = false;
        struct waiter *next = hand_to_waiter(w);
        if (!next && (w->cb_head || w->cb_stop) && w->cb_sleeping)
                pthread_cond_signal(&w->cb_cond);
        pthread_mutex_unlock(&w->cb_lock);
        waiter_wake(next);
}

/*
 * How long the dispatcher looks for more work before it sleeps.
 *
 * Batches of several ops mean appends outrun this thread: then it looks for
 * more work for a while before sleeping, so the completer need not wake it
 * every time (a futex wake and a context switch, several microseconds of
 * CPU on a VM).  A wal whose ops come one at a time (a lone writer waiting
 * for each) gets no spin: it would only burn a CPU its readers and writer
 * may need.
 *
 * The budget is fixed.  A budget that adapted (doubled after a hit, halved
 * after a miss, off below 1 us: commit 9d94941) spent less of the
 * dispatcher's CPU on Redis with a pipeline of 64, whose reply runs come
 * 100-200 us apart, but lost about a fifth of the throughput at a pipeline
 * of 16 and gained nothing measurable at 64 (bench-api against the fixed
 * budget, alternating on a quiet machine, 2026-11-22: P16 new/fixed median
 * 0.79, P64 1.04), so it was taken out again.
 */
#define DISPATCH_SPIN_NS 20000u
/* Single-op batches after the last multi-op one that still earn a spin. */
#define DISPATCH_SPIN_CREDIT 64u
/*
 * A stream of single appends close together (a writer that waits for a
 * tailing reader before its next append, each with a callback) earns no
 * more spin than the credit.  A renewal of the credit by every single-op
 * batch its spin found within 10 us (6d3f646, session 8) was measured
 * against none in session 9 (tools/bench/adaptor-notes.md, "Session 9:
 * latency"): at load 2.3-2.6, 8 alternating pairs of the deliver bench,
 * p50 the same (none/renewed 1.00), p99 0.90, and the dispatcher's CPU per
 * record 3,318 ns renewed against 309 ns without (median): it spun up to
 * DISPATCH_SPIN_NS after each op and still went to sleep after most of
 * them.  So it was taken out.
 */

/* Spin up to DISPATCH_SPIN_NS from @start (the caller's walu_monotonic_ns()
 * reading) for w->cb_queued to move past
 * @seen (or a drain to be asked for).  Returns true if it did. */
static bool spin_for_work(wal *w, unsigned seen, uint64_t start)
{
        uint64_t end = start + DISPATCH_SPIN_NS;
        for (unsigned i = 1;; i++) {
                if (atomic_load_explicit(&w->cb_queued, memory_order_acquire) != seen ||
                    atomic_load_explicit(&w->drain_wanted, memory_order_acquire))
                        return true;
                wal_cpu_relax();
                if (i % 64 == 0) {
                        if (walu_monotonic_ns() >= end)
                                return false;
                        sched_yield();
                }
        }
}

/*
 * Drains left to the dispatcher (no scanner open) come in rounds: each pops
 * what completed since the last one.  While appends stream in (the
 * dispatcher has spin credit) and the last round was small, the dispatcher
 * waits DRAIN_GATHER_NS before the next, without touching what appenders
 * write, so that a round takes a run of ops instead of one or two: every
 * round moves the lines appenders write on every append (the completion
 * count, the queue's tail, the drain request, the durable ID, the wake-up
 * word) to the dispatcher's CPU and back, and rounds of one op made the
 * appending thread pay those misses on every append (its CPU per record
 * doubled when the two threads ran side by side).  The wait ends early
 * when appends stop coming: it looks at the completion count every
 * DRAIN_GATHER_LOOK_NS (a read, one miss per look for the appender, not
 * one per append) and takes the round as soon as the count stood still
 * between two looks, so an appender that waits for its callbacks (a small
 * window) loses about one look per round, not the whole wait.  Callbacks
 * in a stream come at most DRAIN_GATHER_NS later; a lone append (no
 * credit) is drained at once.
 */
#define DRAIN_GATHER_NS 4000u
#define DRAIN_GATHER_LOOK_NS 500u
#define DRAIN_GATHER_MIN 32u

static void gather(wal *w)
{
        uint64_t start = walu_monotonic_ns();
        uint64_t look = start + DRAIN_GATHER_LOOK_NS;
        uint64_t seen = atomic_load_explicit(&w->completions, memory_order_relaxed);
        for (unsigned i = 1;; i++) {
                wal_cpu_relax();
                if (i % 8 != 0)
                        continue;
                uint64_t now = walu_monotonic_ns();
                if (now < look)
                        continue;
                if (now - start >= DRAIN_GATHER_NS)
                        return;
                uint64_t c = atomic_load_explicit(&w->completions, memory_order_relaxed);
                if (c == seen)
                        return;
                seen = c;
                look = now + DRAIN_GATHER_LOOK_NS;
        }
}

static void *dispatcher_main(void *arg)
{
        wal *w = arg;
        /* Batches of several ops earn a spin (DISPATCH_SPIN_CREDIT single-op
         * batches long); see DISPATCH_SPIN_NS. */
        unsigned spin_credit = 0;
        size_t last_round = DRAIN_GATHER_MIN;   /* ops the last drain took */
        pthread_setname_np(pthread_self(), "wal-dispatch");
        pthread_mutex_lock(&w->cb_lock);
        for (;;) {
                /* Completions an appender left to this thread: cleared
                 * before the drain, so one that lands after it asks again. */
                if (atomic_load(&w->drain_wanted)) {
                        pthread_mutex_unlock(&w->cb_lock);
                        /* Streaming (see gather()): let the round grow. */
                        if (spin_credit > 0 && last_round < DRAIN_GATHER_MIN)
                                gather(w);
                        atomic_store(&w->drain_wanted, false);
                        last_round = 0;
                        drain_rounds(w, &last_round, false);
                        pthread_mutex_lock(&w->cb_lock);
                }
                struct wal_append_op *batch = w->cb_busy ? NULL : w->cb_head;
                if (batch) {
                        w->cb_head = w->cb_tail = NULL;
                        w->cb_busy = true;
                        if (batch->next)
                                spin_credit = DISPATCH_SPIN_CREDIT;
                        else if (spin_credit > 0)
                                spin_credit--;
                }
                if (!batch) {
                        if (w->cb_stop && !w->cb_busy && !w->cb_head)
                                break;
                        /* A waiting appender running ops gives them back
                         * with a signal. */
                        if (spin_credit == 0 || w->cb_busy)
                                goto sleep;
                        unsigned seen = atomic_load_explicit(&w->cb_queued,
                                                             memory_order_relaxed);
                        pthread_mutex_unlock(&w->cb_lock);
                        bool more = spin_for_work(w, seen, walu_monotonic_ns());
                        pthread_mutex_lock(&w->cb_lock);
                        if (more || w->cb_head || w->cb_stop)
                                continue;
                        spin_credit = 0;
sleep:
                        /* The copies' next chunk, made here rather than
                         * by an appender (wal/message-internal.h). */
                        if (wal_msg_arena_wants_spare(w->arena)) {
                                pthread_mutex_unlock(&w->cb_lock);
                                wal_msg_arena_fill_spare(w->arena);
                                pthread_mutex_lock(&w->cb_lock);
                                continue;
                        }
                        /* Idle, then look once more: an appender either
                         * sees cb_idle (and signals under cb_lock, which
                         * this thread holds until it waits) or set
                         * drain_wanted before this load. */
                        atomic_store(&w->cb_idle, true);
                        if (atomic_load(&w->drain_wanted)) {
                                atomic_store(&w->cb_idle, false);
                                continue;
                        }
                        w->cb_sleeping = true;
                        pthread_cond_wait(&w->cb_cond, &w->cb_lock);
                        w->cb_sleeping = false;
                        atomic_store(&w->cb_idle, false);
                        continue;
                }
                pthread_mutex_unlock(&w->cb_lock);
                finish_list(w, batch);
                wal_msg_arena_fill_spare(w->arena);
                pthread_mutex_lock(&w->cb_lock);
                w->cb_busy = false;
        }
        pthread_mutex_unlock(&w->cb_lock);
        return NULL;
}

/* Run what is queued, then stop (the queue is final by then; a blocking
 * appender running a run finishes it first). */
static void stop_dispatcher(wal *w)
{
        pthread_mutex_lock(&w->cb_lock);
        bool running = w->cb_running;
        w->cb_stop = true;
        pthread_cond_broadcast(&w->cb_cond);
        pthread_mutex_unlock(&w->cb_lock);
        if (running)
                pthread_join(w->cb_thread, NULL);
        pthread_mutex_lock(&w->cb_lock);
        w->cb_running = false;
        pthread_mutex_unlock(&w->cb_lock);
}

static void op_complete(wal *w, struct wal_append_op *op, bool *pushed, struct op_list *out)
{
        if (op->status == 0) {
                /* The op's own copy, when the interceptors passed it on, is
                 * frozen where it is (nothing may change it once passed on);
                 * a message an interceptor substituted is copied. */
                wal_msg *frozen = NULL;
                int r = 0;
                if (wal_msg_is_immutable(op->sent) &&
                    wal_msgid_cmp(wal_msg_id(op->sent), op->id) == 0) {
                        /* The backend kept and froze it (append_take): the
                         * op's reference to what it sent becomes the
                         * outcome's (nothing reads op->sent after success). */
                        frozen = op->sent;
                        op->sent = NULL;
                } else if (op->sent == op->msg) {
                        r = wal_msg_freeze(op->msg, op->id);
                        if (r == 0)
                                frozen = wal_msg_ref(op->msg);
                } else {
                        r = wal_msg_copy_in(w->arena, op->sent, &frozen);
                        if (r == 0)
                                r = wal_msg_freeze(frozen, op->id);
                }
                if (r < 0) {
                        frozen = wal_msg_unref(frozen);
                        op_out(w, out, op, r, NULL);
                        return;
                }
                if (w->has_cache && wal_cache_push(&w->cache, frozen) == 0)
                        *pushed = true;
                op_out(w, out, op, 0, frozen);
                return;
        }
        if (op->status == -ESTALE)
                atomic_store(&w->fenced, true);
        if (wal_status_retriable(op->status, op->err) && wal_retry_allowed(w, op)) {
                wal_error_free(op->err);
                op->err = NULL;
                wal_schedule_retry(w, op);
                return;
        }
        op_out(w, out, op, op->status, NULL);
}

/*
 * The pending queue: the appends the backend accepted, in ID order, an
 * intrusive queue after Dmitry Vyukov's lock-free MPSC design, with a stub
 * node so that it is never empty.  Appenders link at the tail (an exchange
 * of pend_tail, then a release store of the old tail's pnext); they hold
 * append_lock, so they link one at a time, in the order the backend gave
 * IDs.  The drainer alone pops, at pend_head, and only ops flagged complete.
 * Neither side takes a lock: a drainer popping a long run does not hold
 * up an appender, which used to sleep on the list's mutex behind it.
 *
 * An op is linked after its backend append returned 0, so a refused append
 * never enters the queue, and its completion may come (and be counted)
 * before it is linked.  The appender therefore counts one more event in
 * w->completions after linking (see drain()), and then drains or asks the
 * dispatcher to, as after any append.
 */
static void pend_push(wal *w, struct wal_append_op *op)
{
        atomic_store_explicit(&op->pnext, NULL, memory_order_relaxed);
        struct wal_append_op *prev = atomic_exchange_explicit(&w->pend_tail, op,
                                                              memory_order_acq_rel);
        atomic_store_explicit(&prev->pnext, op, memory_order_release);
}

/* The drainer's pop: the head op if it is complete, else NULL (also while
 * an appender is half-way through linking after it: that appender drains
 * once it has linked). */
static struct wal_append_op *pend_pop(wal *w)
{
        struct wal_append_op *head = w->pend_head;
        struct wal_append_op *next = atomic_load_explicit(&head->pnext, memory_order_acquire);
        if (head == &w->pend_stub) {
                if (!next)
                        return NULL;
                w->pend_head = head = next;
                next = atomic_load_explicit(&head->pnext, memory_order_acquire);
        }
        if (!atomic_load_explicit(&head->completed, memory_order_acquire))
                return NULL;
        if (!next) {
                /* The last node: put the stub behind it to take it out.
                 * An appender that took the tail but has not linked yet
                 * holds a complete op here until it links (settle() waits
                 * for that: the op's own append may have returned). */
                if (head != atomic_load_explicit(&w->pend_tail, memory_order_acquire)) {
                        w->pend_stuck = true;
                        return NULL;
                }
                pend_push(w, &w->pend_stub);
                next = atomic_load_explicit(&head->pnext, memory_order_acquire);
                if (!next) {
                        w->pend_stuck = true;
                        return NULL;
                }
        }
        w->pend_head = next;
        return head;
}

/* Pop and report the completed prefix of the pending queue.  One drainer at
 * a time, the thread that turned @draining on; a completion arriving
 * meanwhile is picked up by its next round.
 *
 * The drainer goes back to the queue only when w->completions moved since
 * its last pop: nothing completed since then means the head is still not
 * complete.  Leaving is a handshake with backend_done() and with an
 * appender that linked an op (both count the event in w->completions, then
 * try to become the drainer or ask the dispatcher to); the drainer turns
 * @draining off, then reads the count again.  Both pairs are sequentially
 * consistent, so either the drainer sees the new count (and comes back) or
 * the other side finds @draining off (and drains itself): no completion is
 * left undrained.
 *
 * Each pass reads w->settle_want first and, unless its pops stopped at a
 * half-linked op (pend_stuck), publishes it in w->settle_done once what it
 * popped is in the cache: see settle().  With @settling (a settler), the
 * drainer makes one pass and leaves; what completed meanwhile is left to the
 * dispatcher (asked to drain), not drained here for as long as appends go on.
 * @returns false if another thread was the drainer. */
static bool drain_rounds(wal *w, size_t *n_popped, bool settling)
{
        bool idle = false;
        if (!atomic_compare_exchange_strong(&w->draining, &idle, true))
                return false;
        for (;;) {
                uint64_t seen;
                for (;;) {
                        seen = atomic_load(&w->completions);
                        uint64_t sw = atomic_load_explicit(&w->settle_want,
                                                           memory_order_acquire);
                        w->pend_stuck = false;
                        struct wal_append_op *batch = NULL, **tail = &batch;
                        struct wal_msgid durable = WAL_MSGID_NONE;
                        struct wal_append_op *op;
                        while ((op = pend_pop(w))) {
                                if (n_popped)
                                        ++*n_popped;
                                op->next = NULL;
                                if (op->status == 0)
                                        durable = op->id;
                                *tail = op;
                                tail = &op->next;
                        }
                        if (!batch) {
                                if (sw != w->settle_seen && !w->pend_stuck) {
                                        w->settle_seen = sw;
                                        atomic_store_explicit(&w->settle_done, sw,
                                                              memory_order_release);
                                }
                                break;
                        }
                        /* Once per round, not per op: appenders read it at
                         * every append (their last-confirmed ID). */
                        if (!wal_msgid_is_none(durable))
                                set_durable_id(w, durable);
                        bool pushed = false;
                        struct op_list out = { 0 };
                        while (batch) {
                                op = batch;
                                batch = op->next;
                                op->next = NULL;
                                op_complete(w, op, &pushed, &out);
                        }
                        if (sw != w->settle_seen && !w->pend_stuck) {
                                w->settle_seen = sw;
                                atomic_store_explicit(&w->settle_done, sw,
                                                      memory_order_release);
                        }
                        if (pushed)
                                wal_adaptor_notify_scanners(w);
                        dispatch_list(w, &out);
                        if (settling || atomic_load(&w->completions) == seen)
                                break;
                }
                atomic_store(&w->draining, false);
                if (atomic_load(&w->completions) == seen)
                        return true;
                if (settling && w->cb_running) {
                        /* The rest is the dispatcher's (its drain is one
                         * more attempt at the drainer's place, as an
                         * appender's would be). */
                        ask_dispatcher_to_drain(w);
                        return true;
                }
                idle = false;
                if (!atomic_compare_exchange_strong(&w->draining, &idle, true))
                        return true;
        }
}

static void drain(wal *w)
{
        if (tls_in_backend_append)
                return;
        drain_rounds(w, NULL, false);
}

static void drain_deferred(void *arg)
{
        drain(arg);
}

static void backend_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct wal_append_op *op = arg;
        wal *w = op->w;
        op->status = status;
        op->id = status == 0 ? id : WAL_MSGID_NONE;
        if (status < 0 && err) {
                wal_error_free(op->err);
                op->err = wal_error_copy(err);
        }
        /* Released to the drainer, who may pop @op at once: @op may be
         * gone after this.  A drainer busy meanwhile sees the count move
         * and comes back for it (drain()). */
        atomic_store_explicit(&op->completed, true, memory_order_release);
        /* Completed inline, inside its own backend append: the appender
         * counts one event after linking it anyway (wal_backend_append()),
         * which the drainer cannot miss, as it follows this store on the
         * same thread; one atomic add on the drainer's line per append
         * fewer. */
        if (op == tls_appending)
                tls_count_left = true;
        else
                atomic_fetch_add(&w->completions, 1);
        /* A backend running a run of completions (walimpls_done_batch_begin)
         * gets one drain at its end: one pass over the pending queue, one
         * scanner notification and one hand-over to the dispatcher for the
         * run, not one per completion. */
        if (!walimpls_done_defer(drain_deferred, w))
                drain(w);
}

/* The end of the chain: called with append_lock held (by timetick). */
int wal_backend_append(wal *w, struct wal_append_op *op, wal_msg *msg)
{
        op->attempts++;
        wal_msg_unref(op->sent);
        op->sent = wal_msg_ref(msg);
        atomic_store_explicit(&op->completed, false, memory_order_relaxed);
        op->status = 0;
        op->id = WAL_MSGID_NONE;

        wal_error *err = NULL;
        /* The adaptor's own message is handed over as it is, where the
         * backend can keep it (append_take freezes it with its ID); a
         * message an interceptor substituted is the interceptor's, and is
         * copied by append. */
        tls_in_backend_append++;
        struct wal_append_op *outer = tls_appending;
        bool outer_left = tls_count_left;
        tls_appending = op;
        tls_count_left = false;
        int r = msg == op->own && !wal_msg_is_immutable(msg)
                        ? walimpls_append_take(w->impl, msg, backend_done, op)
                        : w->impl->ops->append(w->impl, msg, backend_done, op);
        tls_appending = outer;
        tls_in_backend_append--;
        /* A backend that completed the op inline and then refused it
         * breaks its contract; its count is not lost all the same. */
        if (r != 0 && tls_count_left)
                atomic_fetch_add(&w->completions, 1);
        tls_count_left = outer_left;
        if (r == 0) {
                /* Accepted: into the pending queue, in ID order (append_lock
                 * is held), then counted, as its completion may have been
                 * counted already while it was not linked yet (see "The
                 * pending queue").  @op may be gone after the link. */
                pend_push(w, op);
                atomic_fetch_add(&w->completions, 1);
                op_refill_spare(w);
        } else {
                wal_msg_unref(op->sent);
                op->sent = NULL;
                if (r == -ESTALE)
                        atomic_store(&w->fenced, true);
                wal_error_set(&op->err, r, 0, "backend refused the append to \"%s\": %s",
                              w->channel, wal_strerror(r));
        }
        wal_error_free(err);
        return r;
}

int wal_chain_call(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx)
{
        if (idx >= w->n_chain)
                return wal_backend_append(w, op, msg);
        struct wal_chain_link *l = &w->chain[idx];
        if (op->depth < idx + 1)
                op->depth = idx + 1;
        if (l->builtin)
                return l->builtin(w, op, msg, idx);
        struct wal_append_next next = { .w = w, .op = op, .idx = idx + 1 };
        return l->ic.do_append(l->ic.arg, w, msg, &next);
}

int wal_adaptor_next_call(wal_append_next *next, wal_msg *msg)
{
        return wal_chain_call(next->w, next->op, msg, next->idx);
}

/* ---- Append ---- */

/*
 * Who drains after an append.  A tailing scanner sees a message as soon as
 * it and everything before it are durable, so while a scanner exists the
 * appender drains its own completion (when the backend completed it
 * inline) before returning.  With no scanner nobody waits for the cache,
 * and an append with a callback needs the dispatcher anyway: the drain
 * (popping the durable prefix, the cache push and eviction, the hand-over)
 * is left to the dispatcher thread, off the appending thread, which only
 * flags it.  A blocking append drains itself (its caller runs its outcome,
 * see "Dispatcher"), as do the wal's own appends (periodic ticks, rollback
 * markers: rare, and their retries stay as prompt as they were) and any
 * append while the dispatcher is not running.  A scanner being opened
 * counts before it looks for its position and first settles what was left
 * (wal_adaptor_reader_add()), so "latest" still starts after every append
 * completed before the call.
 */
static bool drain_here(wal *w, const struct wal_append_op *op)
{
        return op_is_wait(op) || op->internal || atomic_load(&w->n_readers) > 0 ||
               !w->cb_running;
}

static void ask_dispatcher_to_drain(wal *w)
{
        /* Asked already, not yet taken up: a load, so that appends in a row
         * leave the line shared with the dispatcher that reads it instead
         * of taking it over each time. */
        if (atomic_load(&w->drain_wanted) || atomic_exchange(&w->drain_wanted, true))
                return;
        if (atomic_load(&w->cb_idle)) {
                pthread_mutex_lock(&w->cb_lock);
                pthread_cond_signal(&w->cb_cond);
                pthread_mutex_unlock(&w->cb_lock);
        }
}

/* Every op linked and completed before the call is popped (and pushed into
 * the cache) when this returns.  The settler takes a number and waits for
 * a drain pass that started after it (it read the number) and popped the
 * complete prefix up to an incomplete op or the end, none held back by an
 * appender half-way through linking: its own pass when it gets the
 * drainer's place, else the drainer's next pass.  Bounded by one pass (and
 * a link in progress), not by how long other threads keep appending: the
 * drainer's place may stay taken for that long, and a drainer keeps it
 * while completions keep coming. */
static void settle(wal *w)
{
        uint64_t want = atomic_fetch_add(&w->settle_want, 1) + 1;
        for (;;) {
                drain_rounds(w, NULL, true);
                if (atomic_load_explicit(&w->settle_done, memory_order_acquire) >= want)
                        return;
                sched_yield();
        }
}

void wal_adaptor_reader_add(wal *w)
{
        atomic_fetch_add(&w->n_readers, 1);
        if (w->has_cache)
                settle(w);
}

void wal_adaptor_reader_remove(wal *w)
{
        atomic_fetch_sub(&w->n_readers, 1);
}

int wal_adaptor_append(wal *w, wal_msg *msg, bool take, wal_txn *txn, bool internal,
                       wal_append_done_fn *done, void *userdata, wal_error **reterr)
{
        int r = wal_life_enter(&w->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "wal \"%s\" is closed", w->channel);
        if (w->access != WAL_ACCESS_RW) {
                r = wal_error_set(reterr, -EROFS, 0, "wal \"%s\" is open read-only",
                                  w->channel);
                goto out;
        }
        if (atomic_load(&w->fenced)) {
                r = wal_error_set(reterr, -ESTALE, 0, "fenced: a newer term owns channel \"%s\"",
                                  w->channel);
                goto out;
        }
        /* Appends published within the call (a backend that completes
         * inline): wake parked readers now, so their wake-up (tens of
         * microseconds on a VM) overlaps this append instead of following
         * it; they spin until the entry is there (wait_published).  Only
         * while a scanner exists (a parked reader is one): wake_word's
         * line is written by every drain, and reading it costs an append
         * with no reader a line transfer from the drainer. */
        bool readers = atomic_load_explicit(&w->n_readers, memory_order_relaxed) > 0;
        unsigned published = 0;
        if (readers) {
                published = atomic_load_explicit(&w->wake_word, memory_order_relaxed);
                if (atomic_load_explicit(&w->publish_inline, memory_order_relaxed) &&
                    atomic_load(&w->parked) > 0)
                        wal_futex_wake_all(&w->wake_word);
        }
        struct wal_append_op *op = op_alloc(w);
        if (!op) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto out;
        }
        op->w = w;
        /* A message handed over (@take) whose only reference is the
         * caller's is used as it is: nobody else can see it.  Else, and
         * for a borrowed one, the op works on a copy. */
        bool taken = take && !wal_msg_is_immutable(msg) && wal_msg_is_sole(msg);
        if (taken) {
                op->msg = msg;
        } else if ((r = wal_msg_copy_in(w->arena, msg, &op->msg)) < 0) {
                op_free(op);
                r = wal_error_set(reterr, r, 0, "copying the message: %s", wal_strerror(r));
                goto out;
        }
        /* The copies' arena would like its next chunk faulted in: by the
         * dispatcher, off this thread (it is woken if asleep). */
        if (!taken && wal_msg_arena_wants_spare(w->arena) && w->cb_running)
                ask_dispatcher_to_drain(w);
        if (!txn && !internal)
                wal_msg_set_txn(op->msg, 0, 0);
        op->own = op->msg;
        op->done = done;
        op->userdata = userdata;
        op->txn = txn;
        op->internal = internal;
        op->t_start = walu_cycles();
        op->id = WAL_MSGID_NONE;
        if (txn && wal_msg_type(op->msg) == WAL_MSG_DATA) {
                pthread_mutex_lock(&txn->lock);
                txn->inflight++;
                pthread_mutex_unlock(&txn->lock);
        }
        /* Who drains this append's completion when it comes inline (see
         * drain_here()); decided now, as @op may be gone once passed on. */
        bool here = drain_here(w, op);
        /* User interceptors may look at the message after passing it on,
         * when the op may already be complete and freed: hold a reference
         * (the built-ins never do). */
        wal_msg *hold = w->n_user_links ? wal_msg_ref(op->msg) : NULL;
        bool is_body = txn && wal_msg_type(op->msg) == WAL_MSG_DATA;
        r = w->builtins_only ? wal_builtins_append(w, op, op->msg)
                             : wal_chain_call(w, op, op->msg, 0);
        wal_msg_unref(hold);
        if (r < 0) {
                atomic_fetch_add(&w->metrics.appends_refused, 1);
                if (is_body)
                        wal_txn_body_finished(txn, 0);
                if (reterr && !*reterr && op->err) {
                        *reterr = op->err;
                        op->err = NULL;
                } else if (!op->err) {
                        wal_error_set(reterr, r, 0, "append to \"%s\" refused: %s", w->channel,
                                      wal_strerror(r));
                }
                /* Refused: a message handed over stays the caller's. */
                if (taken)
                        op->msg = NULL;
                op_free(op);
                goto out;
        }
        /* From here on @op belongs to the completion path; a message
         * handed over and copied is released. */
        if (take && !taken)
                wal_msg_unref(msg);
        if (here)
                drain(w);
        else
                ask_dispatcher_to_drain(w);
        if (readers) {
                bool inline_pub = atomic_load_explicit(&w->wake_word,
                                                       memory_order_relaxed) != published;
                if (inline_pub != atomic_load_explicit(&w->publish_inline, memory_order_relaxed))
                        atomic_store_explicit(&w->publish_inline, inline_pub,
                                              memory_order_relaxed);
        }
out:
        wal_life_leave(&w->life);
        return r;
}

/* A blocking append's flush: ask the backend to make what this thread
 * queued durable now, on this thread if it can (wal.flush; the local
 * backend writes and syncs a lone appender's batch itself), instead of
 * waiting for its own threads to get to it.  Inside the lifetime gate, so
 * it never runs concurrently with (or after) the backend's close; a wal
 * that is closing is left to complete the append itself.
 *
 * The gate is held one slice of FLUSH_SLICE_MS at most: wal_close() waits
 * for the gate to empty before it closes the backend, and only that close
 * completes the appends a backend cannot deliver (Kafka with its brokers
 * down waits for them up to message.timeout.ms, 5 minutes: a flush without
 * a limit held the close that long).  Between slices the append may have
 * completed, or the wal started closing: then the wait goes on outside. */
#define FLUSH_SLICE_MS 100

static void flush_for_wait(wal *w, struct waiter *wt, int timeout_ms)
{
        uint64_t deadline = timeout_ms < 0 ? 0 :
                walu_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
        for (;;) {
                if (atomic_load_explicit(&w->no_flush, memory_order_relaxed))
                        return;
                int slice = FLUSH_SLICE_MS;
                if (deadline) {
                        uint64_t now = walu_monotonic_ns();
                        if (now >= deadline)
                                return;
                        slice = (int)WALU_MIN((uint64_t)slice, (deadline - now) / 1000000u + 1);
                }
                if (wal_life_enter(&w->life) < 0)
                        return;
                /* 0 or -ETIMEDOUT (the wait below then times out too); the
                 * append's outcome comes with its completion either way. */
                int r = walimpls_flush(w->impl, slice, NULL);
                if (r == -EOPNOTSUPP)
                        atomic_store_explicit(&w->no_flush, true, memory_order_relaxed);
                wal_life_leave(&w->life);
                if (r != -ETIMEDOUT || atomic_load(&wt->state) != WT_WAITING)
                        return;
        }
}

/* Wait for @wt's outcome until @deadline_ns (0: none), running the ops
 * handed to this caller meanwhile.  0 when it is there, -ETIMEDOUT when the
 * caller gave up (the append then completes in the background). */
static int waiter_wait(wal *w, struct waiter *wt, uint64_t deadline_ns)
{
        for (;;) {
                unsigned s = atomic_load(&wt->state);
                if (s == WT_HANDED) {
                        /* The run starts with this caller's own op. */
                        waiter_run(w, wt);
                        continue;
                }
                if (s == WT_DONE)
                        return 0;
                int ms = -1;
                if (deadline_ns) {
                        uint64_t now = walu_monotonic_ns();
                        if (now >= deadline_ns) {
                                unsigned expect = WT_WAITING;
                                if (atomic_compare_exchange_strong(&wt->state, &expect,
                                                                   WT_ABANDONED))
                                        return -ETIMEDOUT;
                                continue;
                        }
                        uint64_t left = (deadline_ns - now + 999999u) / 1000000u;
                        ms = left > INT32_MAX ? INT32_MAX : (int)left;
                }
                atomic_store(&wt->sleeping, 1);
                if (atomic_load(&wt->state) == WT_WAITING)
                        wal_futex_wait(&wt->state, WT_WAITING, ms);
                atomic_store(&wt->sleeping, 0);
        }
}

int wal_adaptor_append_wait(wal *w, wal_msg *msg, wal_txn *txn, bool internal,
                            int64_t timeout_ms, wal_msg **ret_msg, wal_error **reterr)
{
        if (tls_in_callback)
                return wal_error_set(reterr, -EDEADLK, 0,
                                     "a blocking append to \"%s\" (wal_append_wait, "
                                     "wal_txn_begin) inside an append callback would wait "
                                     "for itself: completions run after the callback "
                                     "returns; use wal_append() there",
                                     w->channel);
        struct waiter *wt = calloc(1, sizeof(*wt));
        if (!wt)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        atomic_init(&wt->refs, 2);
        atomic_init(&wt->state, WT_WAITING);
        if (timeout_ms >= INT32_MAX)
                timeout_ms = 0; /* as good as forever */
        uint64_t deadline = timeout_ms > 0 ? walu_monotonic_ns() +
                                             (uint64_t)timeout_ms * 1000000u : 0;
        /* Kept alive until this returns: the caller may run ops of it. */
        atomic_fetch_add(&w->refs, 1);
        int r = wal_adaptor_append(w, msg, false, txn, internal, waiter_done, wt, reterr);
        if (r < 0) {
                atomic_store(&wt->refs, 1);
                waiter_unref(wt);
                wal_unref_internal(w);
                return r;
        }
        /* Not done yet (not completed inside the append): flush. */
        if (atomic_load(&wt->state) == WT_WAITING)
                flush_for_wait(w, wt, timeout_ms > 0 ? (int)timeout_ms : -1);
        r = waiter_wait(w, wt, deadline);
        if (r < 0) {
                r = wal_error_set(reterr, -ETIMEDOUT, 0,
                                  "append to \"%s\" not durable within append.timeout (%lld ms)",
                                  w->channel, (long long)timeout_ms);
        } else if (wt->status < 0) {
                r = wt->status;
                if (reterr && !*reterr)
                        *reterr = wt->err ? wal_error_copy(wt->err)
                                          : wal_error_new(r, 0, "append failed: %s",
                                                          wal_strerror(r));
        } else if (ret_msg) {
                *ret_msg = wal_msg_ref(wt->msg);
        }
        waiter_unref(wt);
        wal_unref_internal(w);
        return r;
}

/* ---- Retries and the background thread ---- */

void wal_schedule_retry(wal *w, struct wal_append_op *op)
{
        uint64_t now = walu_monotonic_ns();
        if (op->retry_first_ns == 0) {
                op->retry_first_ns = now;
                op->backoff_ms = w->retry_initial_ms;
        } else {
                op->backoff_ms = WALU_MIN(op->backoff_ms * 2, w->retry_max_ms);
        }
        op->retry_due_ns = now + (uint64_t)op->backoff_ms * 1000000u;
        atomic_fetch_add(&w->metrics.retries, 1);
        pthread_mutex_lock(&w->tick_lock);
        op->next = w->retry_head;
        w->retry_head = op;
        pthread_cond_broadcast(&w->tick_cond);
        pthread_mutex_unlock(&w->tick_lock);
}

static void redo(wal *w, struct wal_append_op *op)
{
        /* A fresh copy: the backend may still hold the failed attempt. */
        wal_msg *m = NULL;
        int r = wal_msg_copy(op->sent ? op->sent : op->msg, &m);
        if (r == 0) {
                wal_msg_unref(op->sent);
                op->sent = NULL;
                op->own = m;
                r = wal_chain_call(w, op, m, op->retry_idx);
                op->own = NULL;
                wal_msg_unref(m);
        }
        if (r == 0) {
                drain(w);
                return;
        }
        if (wal_status_retriable(r, op->err) && wal_retry_allowed(w, op)) {
                wal_error_free(op->err);
                op->err = NULL;
                wal_schedule_retry(w, op);
                return;
        }
        dispatch(w, op, r, NULL);
}

static void periodic(wal *w)
{
        uint64_t expired[16];
        size_t n_expired = 0;
        pthread_mutex_lock(&w->append_lock);
        bool need_tick = w->appended_since_tick > 0;
        w->appended_since_tick = 0;
        uint64_t now_ms = walu_realtime_ms();
        for (struct wal_txn **pp = &w->txns; *pp && n_expired < WALU_ARRAY_SIZE(expired);) {
                struct wal_txn *t = *pp;
                if (t->state == WAL_TXN_OPEN && now_ms > wal_tick_ms(t->last_tick) &&
                    now_ms - wal_tick_ms(t->last_tick) > t->keepalive_ms) {
                        t->state = WAL_TXN_EXPIRED;
                        t->listed = false;
                        *pp = t->next;
                        t->next = NULL;
                        expired[n_expired++] = t->id;
                        atomic_fetch_add(&w->metrics.txn_expired, 1);
                } else {
                        pp = &t->next;
                }
        }
        pthread_mutex_unlock(&w->append_lock);

        /* Rollback markers let readers drop an expired transaction early. */
        for (size_t i = 0; i < n_expired; i++) {
                wal_msg *m = NULL;
                if (wal_msg_new(WAL_MSG_TXN_ROLLBACK, NULL, 0, &m) == 0) {
                        wal_msg_set_txn(m, expired[i], 0);
                        if (wal_adaptor_append(w, m, true, NULL, true, NULL, NULL, NULL) < 0)
                                wal_msg_unref(m);
                }
        }
        if (need_tick) {
                wal_msg *m = NULL;
                if (wal_msg_new(WAL_MSG_TIME_TICK, NULL, 0, &m) == 0 &&
                    wal_adaptor_append(w, m, true, NULL, true, NULL, NULL, NULL) < 0)
                        wal_msg_unref(m);
        }
        if (w->has_cache)
                wal_cache_evict_aged(&w->cache);
}

static void *ticker_main(void *arg)
{
        wal *w = arg;
        uint64_t interval_ns = (uint64_t)w->tick_interval_ms * 1000000u;
        uint64_t next_tick = walu_monotonic_ns() + interval_ns;
        pthread_setname_np(pthread_self(), "wal-tick");
        pthread_mutex_lock(&w->tick_lock);
        while (!w->ticker_stop) {
                uint64_t now = walu_monotonic_ns();
                struct wal_append_op *due = NULL;
                uint64_t wake = next_tick;
                for (struct wal_append_op **pp = &w->retry_head; *pp;) {
                        struct wal_append_op *op = *pp;
                        if (op->retry_due_ns <= now) {
                                *pp = op->next;
                                op->next = due;
                                due = op;
                        } else {
                                wake = WALU_MIN(wake, op->retry_due_ns);
                                pp = &op->next;
                        }
                }
                bool do_tick = now >= next_tick;
                if (do_tick)
                        next_tick = now + interval_ns;
                if (due || do_tick) {
                        pthread_mutex_unlock(&w->tick_lock);
                        while (due) {
                                struct wal_append_op *op = due;
                                due = op->next;
                                op->next = NULL;
                                redo(w, op);
                        }
                        if (do_tick)
                                periodic(w);
                        pthread_mutex_lock(&w->tick_lock);
                        continue;
                }
                struct timespec ts = { .tv_sec = (time_t)(wake / 1000000000u),
                                       .tv_nsec = (long)(wake % 1000000000u) };
                pthread_cond_timedwait(&w->tick_cond, &w->tick_lock, &ts);
        }
        pthread_mutex_unlock(&w->tick_lock);
        return NULL;
}

/* ---- Open ---- */

struct anchor_wait {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        int status;
        struct wal_msgid id;
        wal_error *err;
};

static void anchor_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct anchor_wait *aw = arg;
        pthread_mutex_lock(&aw->lock);
        aw->status = status;
        aw->id = id;
        aw->err = err ? wal_error_copy(err) : NULL;
        aw->done = true;
        pthread_cond_broadcast(&aw->cond);
        pthread_mutex_unlock(&aw->lock);
}

/*
 * Newest tick in the log, so this term's clock starts above it.  When the
 * newest message cannot be read (an error, or nothing within 5 s), the
 * clock is not seeded from the log: the anchor's realtime floor still puts
 * this term above every older writer on the same clock, but not above one
 * whose clock ran ahead, so the log hook hears about it.
 */
static void seed_clock(wal *w, struct wal_msgid *ret_last)
{
        *ret_last = WAL_MSGID_NONE;
        if (!w->impl->ops->info)
                return;
        struct walimpls_info info = { .first_id = WAL_MSGID_NONE, .last_id = WAL_MSGID_NONE };
        wal_error *err = NULL;
        int r = w->impl->ops->info(w->impl, &info, &err);
        if (r < 0 || wal_msgid_is_none(info.last_id))
                goto out;
        *ret_last = info.last_id;
        struct walimpls_read_opts ro = {
                .name = "anchor",
                .deliver = { .policy = WAL_DELIVER_START_FROM, .id = info.last_id },
        };
        struct walimpls_scanner *s = NULL;
        if ((r = w->impl->ops->read(w->impl, &ro, &s, &err)) < 0)
                goto out;
        wal_msg *m = NULL;
        r = s->ops->next(s, 5000, &m, &err);
        if (r == 0) {
                if (wal_msg_time_tick(m) > w->last_tick)
                        w->last_tick = wal_msg_time_tick(m);
                wal_msg_unref(m);
        }
        s->ops->close(s);
out:
        if (r < 0 && r != -EOPNOTSUPP) {
                char id[WAL_MSGID_STRLEN] = "";
                if (!wal_msgid_is_none(info.last_id))
                        wal_msgid_format(info.last_id, id, sizeof(id));
                walu_log(WAL_LOG_WARNING,
                         "wal %s: time ticks not seeded from the log (newest message %s: %s); "
                         "this term's ticks start at the realtime clock",
                         w->channel, id[0] ? id : "unknown",
                         err ? wal_error_message(err) : wal_strerror(r));
        }
        wal_error_free(err);
}

/*
 * Fence + anchor: a time tick appended straight to the backend, above every
 * tick of an older term that can precede it in the log.  The newest durable
 * message seeds the clock, but an older term's appends accepted before the
 * backend's open fenced it may still be in flight and land after that one,
 * ahead of the anchor; their ticks were taken before the fence, so at most
 * in the millisecond the open returned in (a clock read off the same
 * realtime clock), possibly with a logical part.  The anchor's tick is
 * therefore at least the first tick of the next millisecond (the hybrid
 * clock may run ahead of the physical one).  An older writer whose clock
 * ran ahead of realtime (seeded from a log written ahead of it) is covered
 * only as far as its durable messages are.
 */
static int anchor(wal *w, wal_error **reterr)
{
        uint64_t floor = (walu_realtime_ms() + 1) << WAL_TICK_LOGICAL_BITS;
        struct wal_msgid prev_last;
        seed_clock(w, &prev_last);
        if (w->last_tick < floor - 1)
                w->last_tick = floor - 1;
        uint64_t start = walu_monotonic_ns();
        int64_t backoff = w->retry_initial_ms;
        int64_t limit_ms = w->retry_max_elapsed_ms > 0 ? w->retry_max_elapsed_ms : 30000;
        for (;;) {
                wal_msg *m = NULL;
                int r = wal_msg_new(WAL_MSG_TIME_TICK, NULL, 0, &m);
                if (r < 0)
                        return wal_error_set(reterr, r, 0, "out of memory");
                wal_msg_set_time_tick(m, wal_next_tick(w));
                wal_msg_set_term(m, w->term);
                wal_msg_set_last_confirmed(m, prev_last);
                struct anchor_wait aw = { .id = WAL_MSGID_NONE };
                pthread_mutex_init(&aw.lock, NULL);
                pthread_cond_init(&aw.cond, NULL);
                r = w->impl->ops->append(w->impl, m, anchor_done, &aw);
                if (r == 0) {
                        pthread_mutex_lock(&aw.lock);
                        while (!aw.done)
                                pthread_cond_wait(&aw.cond, &aw.lock);
                        pthread_mutex_unlock(&aw.lock);
                        r = aw.status;
                }
                pthread_mutex_destroy(&aw.lock);
                pthread_cond_destroy(&aw.cond);
                if (r == 0) {
                        wal_msg *frozen = NULL;
                        r = wal_msg_copy(m, &frozen);
                        if (r == 0)
                                r = wal_msg_freeze(frozen, aw.id);
                        wal_msg_unref(m);
                        if (r < 0) {
                                wal_msg_unref(frozen);
                                return wal_error_set(reterr, r, 0, "out of memory");
                        }
                        set_durable_id(w, aw.id);
                        wal_cache_push(&w->cache, frozen);
                        wal_msg_unref(frozen);
                        return 0;
                }
                wal_msg_unref(m);
                uint64_t el_ms = (walu_monotonic_ns() - start) / 1000000u;
                if (!wal_status_retriable(r, aw.err) || el_ms >= (uint64_t)limit_ms) {
                        if (reterr && !*reterr && aw.err) {
                                *reterr = aw.err;
                                aw.err = NULL;
                        }
                        wal_error_free(aw.err);
                        wal_error_prefix(reterr, "first time tick of \"%s\": ", w->channel);
                        return wal_error_set(reterr, r, 0,
                                             "first time tick of \"%s\" failed: %s",
                                             w->channel, wal_strerror(r));
                }
                wal_error_free(aw.err);
                struct timespec ts = { .tv_sec = backoff / 1000,
                                       .tv_nsec = (backoff % 1000) * 1000000L };
                nanosleep(&ts, NULL);
                backoff = WALU_MIN(backoff * 2, w->retry_max_ms);
        }
}

static int cfg_ms(const wal_config *c, const char *key, int64_t *ret)
{
        return wal_config_get_duration_ms(c, key, ret);
}

static int load_config(wal *w, const wal_config *c, uint64_t *cache_bytes, int64_t *cache_age,
                       wal_error **reterr)
{
        int r = 0;
        if ((r = wal_config_get_size(c, "message.max_bytes", &w->max_bytes)) < 0 ||
            (r = wal_config_get_size(c, "cache.max_bytes", cache_bytes)) < 0 ||
            (r = cfg_ms(c, "cache.max_age", cache_age)) < 0 ||
            (r = cfg_ms(c, "retry.backoff_initial", &w->retry_initial_ms)) < 0 ||
            (r = cfg_ms(c, "retry.backoff_max", &w->retry_max_ms)) < 0 ||
            (r = cfg_ms(c, "retry.max_elapsed", &w->retry_max_elapsed_ms)) < 0 ||
            (r = cfg_ms(c, "timetick.interval", &w->tick_interval_ms)) < 0 ||
            (r = cfg_ms(c, "txn.keepalive", &w->txn_keepalive_ms)) < 0 ||
            (r = cfg_ms(c, "append.timeout", &w->append_timeout_ms)) < 0)
                return wal_error_set(reterr, r, 0, "reading the core properties: %s",
                                     wal_strerror(r));
        if (w->retry_initial_ms < 1)
                w->retry_initial_ms = 1;
        if (w->retry_max_ms < w->retry_initial_ms)
                w->retry_max_ms = w->retry_initial_ms;
        if (w->tick_interval_ms < 1)
                w->tick_interval_ms = 1;
        return 0;
}

static int chain_add(wal *w, const struct wal_chain_link *l, wal_error **reterr)
{
        for (size_t i = 0; i < w->n_chain; i++)
                if (strcmp(w->chain[i].name, l->name) == 0)
                        return wal_error_set(reterr, -EEXIST, 0,
                                             "interceptor \"%s\" is already in the chain",
                                             l->name);
        struct wal_chain_link *nc = realloc(w->chain, (w->n_chain + 1) * sizeof(*nc));
        if (!nc)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        w->chain = nc;
        struct wal_chain_link *dst = &w->chain[w->n_chain];
        *dst = *l;
        dst->name = strdup(l->name);
        if (!dst->name)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        dst->ic.name = dst->name;
        w->n_chain++;
        return 0;
}

static int build_chain(wal *w, const struct wal_open_opts *opts, wal_error **reterr)
{
        wal_opener *o = w->opener;
        int r = 0;
        pthread_mutex_lock(&o->lock);
        for (size_t i = 0; i < o->n_ics && r == 0; i++)
                r = chain_add(w, &o->ics[i], reterr);
        pthread_mutex_unlock(&o->lock);
        for (size_t i = 0; i < opts->n_interceptors && r == 0; i++) {
                const struct wal_interceptor *ic = &opts->interceptors[i];
                struct wal_chain_link l = { .name = (char *)ic->name, .ic = *ic };
                r = chain_add(w, &l, reterr);
        }
        if (r < 0)
                return r;
        w->n_user_links = w->n_chain;
        for (size_t i = 0; i < w->n_user_links; i++)
                if (w->chain[i].ic.done)
                        w->user_done_hooks = true;
        static const struct {
                const char *name;
                wal_builtin_fn *fn;
                wal_builtin_done_fn *done;
        } builtins[] = {
                { "retry", wal_builtin_retry, NULL },
                { "validate", wal_builtin_validate, NULL },
                { "timetick", wal_builtin_timetick, NULL },
                { "metrics", wal_builtin_metrics, wal_builtin_metrics_done },
        };
        for (size_t i = 0; i < WALU_ARRAY_SIZE(builtins) && r == 0; i++) {
                struct wal_chain_link l = { .name = (char *)builtins[i].name,
                                            .builtin = builtins[i].fn,
                                            .builtin_done = builtins[i].done };
                r = chain_add(w, &l, reterr);
        }
        /* Nothing but the built-ins, in the order wal_builtins_append()
         * runs them. */
        w->builtins_only = r == 0 && w->n_user_links == 0 &&
                           w->n_chain == WALU_ARRAY_SIZE(builtins);
        return r;
}

static void stop_ticker(wal *w)
{
        pthread_mutex_lock(&w->tick_lock);
        w->ticker_stop = true;
        pthread_cond_broadcast(&w->tick_cond);
        bool running = w->ticker_running;
        w->ticker_running = false;
        pthread_mutex_unlock(&w->tick_lock);
        if (running)
                pthread_join(w->ticker, NULL);
}

int wal_adaptor_open(wal_opener *o, const struct wal_open_opts *opts, wal **ret,
                     wal_error **reterr)
{
        int r = wal_life_enter(&o->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "opener is closed");
        size_t n_ready = 0;     /* user links whose ready hook succeeded */
        /* The append latency's clock (walu_cycles()), calibrated once. */
        walu_cycles_init();
        /* Aligned: some members sit on cache lines of their own. */
        wal *w = aligned_alloc(alignof(wal), sizeof(*w));
        if (w)
                memset(w, 0, sizeof(*w));
        if (!w) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto out;
        }
        atomic_init(&w->refs, 1);
        wal_life_init(&w->life);
        atomic_fetch_add(&o->refs, 1);
        w->opener = o;
        w->term = opts->term;
        w->access = opts->access;
        w->serial = atomic_fetch_add(&o->next_serial, 1);
        set_durable_id(w, WAL_MSGID_NONE);
        atomic_init(&w->next_txn_id, 1);
        pthread_mutex_init(&w->append_lock, NULL);
        w->pend_head = &w->pend_stub;
        atomic_init(&w->pend_tail, &w->pend_stub);
        atomic_init(&w->pend_stub.pnext, NULL);
        atomic_init(&w->settle_want, 0);
        atomic_init(&w->settle_done, 0);
        pthread_mutex_init(&w->tick_lock, NULL);
        pthread_mutex_init(&w->scan_lock, NULL);
        pthread_mutex_init(&w->cb_lock, NULL);
        pthread_cond_init(&w->cb_cond, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->tick_cond, &ca);
        pthread_condattr_destroy(&ca);
        w->channel = strdup(opts->channel);
        if (!w->channel) {
                r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                goto fail;
        }
        uint64_t cache_bytes = 0;
        int64_t cache_age = 0;
        r = load_config(w, o->cfg, &cache_bytes, &cache_age, reterr);
        if (r < 0)
                goto fail;
        r = build_chain(w, opts, reterr);
        if (r < 0)
                goto fail;

        struct walimpls_open_opts bo = { .channel = w->channel, .term = w->term,
                                         .access = w->access };
        r = o->impl->ops->open(o->impl, &bo, &w->impl, reterr);
        if (r < 0) {
                wal_error_prefix(reterr, "opening \"%s\": ", w->channel);
                if (!reterr || !*reterr)
                        wal_error_set(reterr, r, 0, "opening \"%s\": %s", w->channel,
                                      wal_strerror(r));
                w->impl = NULL;
                goto fail;
        }
        if (w->access == WAL_ACCESS_RW) {
                r = wal_cache_init(&w->cache, cache_bytes, cache_age);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "out of memory");
                        goto fail;
                }
                w->has_cache = true;
                r = wal_msg_arena_new(&w->arena);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "out of memory");
                        goto fail;
                }
                r = anchor(w, reterr);
                if (r < 0)
                        goto fail;
                if (pthread_create(&w->ticker, NULL, ticker_main, w) != 0) {
                        r = wal_error_set(reterr, -EAGAIN, 0, "cannot start a thread");
                        goto fail;
                }
                w->ticker_running = true;
                if (pthread_create(&w->cb_thread, NULL, dispatcher_main, w) != 0) {
                        r = wal_error_set(reterr, -EAGAIN, 0, "cannot start a thread");
                        goto fail;
                }
                w->cb_running = true;
        }
        for (size_t i = 0; i < w->n_user_links; i++) {
                struct wal_chain_link *l = &w->chain[i];
                if (l->ic.ready && (r = l->ic.ready(l->ic.arg, w)) < 0) {
                        if (r > 0)
                                r = -r;
                        wal_error_set(reterr, r, 0, "interceptor \"%s\" is not ready: %s",
                                      l->name, wal_strerror(r));
                        goto fail;
                }
                n_ready = i + 1;
        }

        pthread_mutex_lock(&o->lock);
        if (o->n_wals == o->cap_wals) {
                size_t cap = o->cap_wals ? o->cap_wals * 2 : 8;
                wal **nw = realloc(o->wals, cap * sizeof(*nw));
                if (!nw) {
                        pthread_mutex_unlock(&o->lock);
                        r = wal_error_set(reterr, -ENOMEM, 0, "out of memory");
                        goto fail;
                }
                o->wals = nw;
                o->cap_wals = cap;
        }
        atomic_fetch_add(&w->refs, 1); /* the opener's list */
        o->wals[o->n_wals++] = w;
        pthread_mutex_unlock(&o->lock);
        *ret = w;
        r = 0;
        goto out;
fail:
        if (w) {
                stop_ticker(w);
                stop_dispatcher(w);
                /* Every ready that succeeded gets its close (no append ran:
                 * this is after the last done). */
                for (size_t i = 0; i < n_ready; i++)
                        if (w->chain[i].ic.ready && w->chain[i].ic.close)
                                w->chain[i].ic.close(w->chain[i].ic.arg, w);
                if (w->impl)
                        w->impl->ops->close(w->impl);
                w->impl = NULL;
                wal_unref_internal(w);
        }
out:
        wal_life_leave(&o->life);
        return r;
}

/* ---- Truncate, info ---- */

int wal_adaptor_truncate(wal *w, struct wal_msgid id, wal_error **reterr)
{
        int r = wal_life_enter(&w->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "wal \"%s\" is closed", w->channel);
        struct walimpls_info bi = { .first_id = WAL_MSGID_NONE, .last_id = WAL_MSGID_NONE };
        if (!w->impl->ops->truncate) {
                r = wal_error_set(reterr, -EOPNOTSUPP, 0,
                                  "backend \"%s\" cannot truncate", w->opener->builder->name);
        } else if (w->impl->ops->info && w->impl->ops->info(w->impl, &bi, NULL) == 0 &&
                   !wal_msgid_is_none(bi.last_id) && wal_msgid_cmp(id, bi.last_id) > 0) {
                /* An ID the log has not reached is a caller's mistake, and
                 * would mean "everything" to some backends (XTRIM MINID)
                 * and nothing to others: refused the same way everywhere.
                 * Appends meanwhile only move the last ID up. */
                char want[WAL_MSGID_STRLEN] = "", last[WAL_MSGID_STRLEN] = "";
                wal_msgid_format(id, want, sizeof(want));
                wal_msgid_format(bi.last_id, last, sizeof(last));
                r = wal_error_set(reterr, -EINVAL, 0,
                                  "truncating \"%s\": ID %s is after the last ID %s of the "
                                  "channel; nothing was truncated",
                                  w->channel, want, last);
        } else {
                r = w->impl->ops->truncate(w->impl, id, reterr);
        }
        if (r < 0 && reterr && !*reterr)
                wal_error_set(reterr, r, 0, "truncating \"%s\": %s", w->channel,
                              wal_strerror(r));
        wal_life_leave(&w->life);
        return r;
}

int wal_adaptor_info(wal *w, struct wal_info *ret, wal_error **reterr)
{
        int r = wal_life_enter(&w->life);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "wal \"%s\" is closed", w->channel);
        struct walimpls_info bi = { .first_id = WAL_MSGID_NONE, .last_id = WAL_MSGID_NONE,
                                    .count = -1, .bytes = -1, .term = -1 };
        if (w->impl->ops->info)
                r = w->impl->ops->info(w->impl, &bi, reterr);
        if (r == 0) {
                pthread_mutex_lock(&w->append_lock);
                uint64_t tick = w->last_tick;
                pthread_mutex_unlock(&w->append_lock);
                *ret = (struct wal_info){
                        .channel = w->channel,
                        .term = w->term,
                        .access = w->access,
                        .first_id = bi.first_id,
                        .last_id = bi.last_id,
                        .count = bi.count,
                        .bytes = bi.bytes,
                        .owner_term = bi.term,
                        .durability = bi.durability ? bi.durability : "unknown",
                        .last_time_tick = tick,
                };
        } else if (reterr && !*reterr) {
                wal_error_set(reterr, r, 0, "info of \"%s\": %s", w->channel, wal_strerror(r));
        }
        wal_life_leave(&w->life);
        return r;
}

/* ---- Scanners registry ---- */

void wal_futex_wait(atomic_uint *word, unsigned val, int timeout_ms)
{
        struct timespec ts = { .tv_sec = timeout_ms / 1000,
                               .tv_nsec = (long)(timeout_ms % 1000) * 1000000L };
        syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, val,
                timeout_ms < 0 ? NULL : &ts, NULL, 0);
}

void wal_futex_wake_all(atomic_uint *word)
{
        syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* After a batch went into the cache: one bump of the word, one wake-up
 * system call only if a scanner is parked, eventfd kicks only for scanners
 * whose fd is in use. */
void wal_adaptor_notify_scanners(wal *w)
{
        atomic_fetch_add(&w->wake_word, 1);
        if (atomic_load(&w->parked) > 0)
                wal_futex_wake_all(&w->wake_word);
        if (atomic_load(&w->n_fd_scanners) == 0)
                return;
        pthread_mutex_lock(&w->scan_lock);
        for (size_t i = 0; i < w->n_scanners; i++)
                if (atomic_load_explicit(&w->scanners[i]->fd_wanted, memory_order_relaxed))
                        walimpls_notifier_signal(&w->scanners[i]->notifier);
        pthread_mutex_unlock(&w->scan_lock);
}

/* ---- Close ---- */

void wal_adaptor_close_inner(wal *w)
{
        /* Completions left to the dispatcher are drained while the wal is
         * still open, as the appender would have drained them: a retriable
         * failure among them is queued for its retry (and cancelled below),
         * not reported as the failure itself. */
        if (w->has_cache && wal_life_is_open(&w->life))
                settle(w);
        if (!wal_life_begin_close(&w->life))
                return;
        stop_ticker(w);
        wal_life_wait_idle(&w->life);

        /* Scanners end first: the backend wal outlives its scanners. */
        for (;;) {
                pthread_mutex_lock(&w->scan_lock);
                wal_scanner *s = w->n_scanners ? w->scanners[w->n_scanners - 1] : NULL;
                if (s)
                        atomic_fetch_add(&s->refs, 1);
                pthread_mutex_unlock(&w->scan_lock);
                if (!s)
                        break;
                wal_adaptor_scanner_close_inner(s);
                wal_adaptor_scanner_close(s); /* drops the reference taken above */
        }

        /* Completes every append in flight (drain runs their callbacks). */
        if (w->impl)
                w->impl->ops->close(w->impl);
        w->impl = NULL;
        drain(w);

        pthread_mutex_lock(&w->tick_lock);
        struct wal_append_op *retries = w->retry_head;
        w->retry_head = NULL;
        pthread_mutex_unlock(&w->tick_lock);
        while (retries) {
                struct wal_append_op *op = retries;
                retries = op->next;
                op->next = NULL;
                wal_error_free(op->err);
                op->err = wal_error_new(-ECANCELED, 0, "wal \"%s\" closed while the append "
                                        "waited for a retry", w->channel);
                dispatch(w, op, -ECANCELED, NULL);
        }
        /* Every outcome is queued now: run the callbacks, then stop. */
        stop_dispatcher(w);
        WAL_ASSERT(w->pend_head == &w->pend_stub &&
                   atomic_load(&w->pend_stub.pnext) == NULL);

        for (size_t i = 0; i < w->n_user_links; i++)
                if (w->chain[i].ic.close)
                        w->chain[i].ic.close(w->chain[i].ic.arg, w);
        if (w->has_cache)
                wal_cache_close(&w->cache);

        /* Leave the opener's list, then let waiting closers go. */
        wal_opener *o = w->opener;
        bool listed = false;
        pthread_mutex_lock(&o->lock);
        for (size_t i = 0; i < o->n_wals; i++) {
                if (o->wals[i] == w) {
                        o->wals[i] = o->wals[--o->n_wals];
                        listed = true;
                        break;
                }
        }
        pthread_mutex_unlock(&o->lock);
        wal_life_set_closed(&w->life);
        if (listed)
                wal_unref_internal(w);
}

void wal_adaptor_close(wal *w)
{
        wal_adaptor_close_inner(w);
        wal_unref_internal(w);
}
