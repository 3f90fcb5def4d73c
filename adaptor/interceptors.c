/* SPDX-License-Identifier: MIT */
/*
 * adaptor/interceptors.c: the built-in interceptors, innermost last:
 *
 *   retry     arms a redo of the chain below it when the backend fails with a
 *             retriable error (exponential backoff retry.backoff_initial ..
 *             retry.backoff_max, for at most retry.max_elapsed); never after
 *             -ESTALE (fenced), -ESHUTDOWN, -ECANCELED or a fatal error.  A
 *             redo runs validate and timetick again, so the message gets a
 *             fresh time tick and tick order stays equal to ID order.
 *   validate  message.max_bytes (-EMSGSIZE), reserved '_' property keys,
 *             vchannel names, and the rule that applications append data
 *             only (-EINVAL); every error names the rule broken.
 *   timetick  under the wal's append lock: the next hybrid-logical-clock tick
 *             (physical ms << 18 | logical, strictly increasing), the term,
 *             the last-confirmed ID, transaction bookkeeping; then the rest
 *             of the chain, whose last step calls the backend's append, still
 *             under the lock, so ticks and IDs are assigned in one order.
 *   metrics   counts and times appends (adaptor/metrics.c renders them).
 *
 * Last-confirmed ID: the end of the durable prefix when the message is
 * stamped, lowered to the floor of every open transaction (what was durable
 * when its begin was stamped), so that reading from a message's
 * last-confirmed ID yields every message, transaction bodies included, that
 * a reader needs to see everything with a later time tick.
 */
#include <errno.h>
#include <string.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"

/* ---- Retry ---- */

bool wal_status_retriable(int status, const wal_error *err)
{
        switch (status) {
        case 0:
        case -ESTALE:
        case -ESHUTDOWN:
        case -ECANCELED:
        case -EROFS:
        case -EINVAL:
        case -EMSGSIZE:
        case -ETIME:
        case -EBUSY:
        case -EIO:
        case -ENOSPC:
                return false;
        }
        if (err && wal_error_is_fatal(err))
                return false;
        if (err && wal_error_is_retriable(err))
                return true;
        switch (status) {
        case -EAGAIN:
        case -ETIMEDOUT:
        case -ECONNRESET:
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -ENOTCONN:
        case -ENOBUFS:
                return true;
        }
        return false;
}

bool wal_retry_allowed(wal *w, struct wal_append_op *op)
{
        if (!op->retry_armed || atomic_load(&w->fenced) || !wal_life_is_open(&w->life))
                return false;
        if (w->retry_max_elapsed_ms > 0 && op->retry_first_ns != 0) {
                uint64_t el_ms = (walu_monotonic_ns() - op->retry_first_ns) / 1000000u;
                if (el_ms >= (uint64_t)w->retry_max_elapsed_ms)
                        return false;
        }
        return true;
}

/* @r, what the links after retry's returned: a refusal for now
 * (back-pressure, a lost connection) that retry may still take over becomes
 * an accepted append, redone after the backoff (0); anything else is
 * returned as it is. */
static int retry_take_over(wal *w, struct wal_append_op *op, int r)
{
        if (r < 0 && wal_status_retriable(r, op->err) && wal_retry_allowed(w, op)) {
                wal_error_free(op->err);
                op->err = NULL;
                wal_schedule_retry(w, op);
                return 0;
        }
        return r;
}

int wal_builtin_retry(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx)
{
        op->retry_armed = true;
        op->retry_idx = idx + 1;
        return retry_take_over(w, op, wal_chain_call(w, op, msg, idx + 1));
}

/* ---- Validate ---- */

/* validate's rules: 0, or the refusal naming the rule broken. */
static int validate_check(wal *w, struct wal_append_op *op, wal_msg *msg)
{
        enum wal_msg_type type = wal_msg_type(msg);
        if (!op->internal && type != WAL_MSG_DATA)
                return wal_error_set(&op->err, -EINVAL, 0,
                                     "message type \"%s\" cannot be appended: applications "
                                     "append data (transactions use wal_txn_*)",
                                     wal_msg_type_name(type) ? wal_msg_type_name(type) : "?");
        size_t size = wal_msg_size(msg);
        op->bytes = size;
        op->tick = type == WAL_MSG_TIME_TICK;
        if (size > w->max_bytes)
                return wal_error_set(&op->err, -EMSGSIZE, 0,
                                     "message of %zu bytes exceeds message.max_bytes (%llu)",
                                     size, (unsigned long long)w->max_bytes);
        size_t n = wal_msg_prop_count(msg);
        for (size_t i = 0; i < n; i++) {
                const char *k = NULL, *v = NULL;
                if (wal_msg_prop_at(msg, i, &k, &v) == 0 && k && k[0] == '_' && !op->internal)
                        return wal_error_set(&op->err, -EINVAL, 0,
                                             "property key \"%s\": keys starting with '_' "
                                             "are reserved for libwal", k);
        }
        const char *vc = wal_msg_vchannel(msg);
        if (vc && !walimpls_channel_name_valid(vc))
                return wal_error_set(&op->err, -EINVAL, 0,
                                     "vchannel \"%.64s\" is not a valid name (1..200 bytes of "
                                     "[A-Za-z0-9._-], not starting with '.' or '-')", vc);
        return 0;
}

int wal_builtin_validate(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx)
{
        int r = validate_check(w, op, msg);
        return r < 0 ? r : wal_chain_call(w, op, msg, idx + 1);
}

/* ---- Time tick ---- */

/* Next tick from a wall-clock reading (@now_ms, CLOCK_REALTIME or its
 * coarse variant): ticks stay strictly increasing whatever the reading,
 * since the tick is above the last one in any case.
 *
 * Appends take the physical part from CLOCK_REALTIME_COARSE (about 14 ns a
 * read on this project's VMs, against 30-95 ns for CLOCK_REALTIME, which
 * was the largest single cost the adaptor added to an append).  That clock
 * is the wall clock as of the kernel's last timer tick: never ahead of
 * CLOCK_REALTIME, behind it by at most one tick period (clock_getres() of
 * CLOCK_REALTIME_COARSE, 4 ms at HZ=250) and that tick's delay.  So the
 * physical part of an append's tick is at most that much below the time of
 * its wal_append() call (or the last tick's, when the logical part carries
 * it), and never above the time its wal_append() returned: the anchor's
 * realtime floor between terms (anchor() in wal.c: the next term starts at
 * the precise clock's next millisecond) still holds, as a lagging clock
 * only lowers the older term's ticks.  The anchor still reads
 * CLOCK_REALTIME (wal_next_tick()); periodic ticks are appends like any
 * other.
 *
 * Messages of a transaction (begin, bodies, commit, rollback) read
 * CLOCK_REALTIME too: their ticks measure its idle time against its
 * keepalive (txn_stamp(), the background expiry in wal.c, and readers in
 * adaptor/scanner.c), and two coarse readings can be further apart than
 * the calls that took them by up to the clock's lag, which expired
 * transactions up to about 4 ms early.  With precise readings the idle
 * time by ticks is never longer than the time between the calls (the
 * physical parts are whole ms: a difference above the keepalive means
 * more than the keepalive elapsed), and ticks of other messages, which lag,
 * can only make a reader's expiry later. */
static uint64_t next_tick_at(wal *w, uint64_t now_ms)
{
        uint64_t now = now_ms << WAL_TICK_LOGICAL_BITS;
        uint64_t t = now > w->last_tick ? now : w->last_tick + 1;
        w->last_tick = t;
        return t;
}

uint64_t wal_next_tick(wal *w)
{
        return next_tick_at(w, walu_realtime_ms());
}

struct wal_msgid wal_current_last_confirmed(wal *w)
{
        struct wal_msgid lc = wal_durable_id(w);
        for (struct wal_txn *t = w->txns; t; t = t->next)
                if (wal_msgid_cmp(t->lc_floor, lc) < 0)
                        lc = t->lc_floor;
        return lc;
}

static void txn_unlist(wal *w, struct wal_txn *t)
{
        for (struct wal_txn **pp = &w->txns; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        t->next = NULL;
                        t->listed = false;
                        return;
                }
        }
}

/* Transaction rules, append_lock held.  0 or a refusal. */
static int txn_stamp(wal *w, struct wal_append_op *op, wal_msg *msg, uint64_t tick)
{
        struct wal_txn *t = op->txn;
        enum wal_msg_type type = wal_msg_type(msg);
        if (type == WAL_MSG_TXN_BEGIN) {
                t->lc_floor = wal_current_last_confirmed(w);
                t->last_tick = tick;
                t->state = WAL_TXN_OPEN;
                t->next = w->txns;
                w->txns = t;
                t->listed = true;
        } else {
                if (t->state == WAL_TXN_EXPIRED)
                        return wal_error_set(&op->err, -ETIME, 0,
                                             "transaction %llu expired",
                                             (unsigned long long)t->id);
                /* A redo of a body already accepted may still land while
                 * the commit waits for it; a new body may not. */
                if (type == WAL_MSG_DATA && t->state != WAL_TXN_OPEN && op->attempts == 0)
                        return wal_error_set(&op->err, -EBUSY, 0,
                                             "transaction %llu is no longer open",
                                             (unsigned long long)t->id);
                uint64_t idle = wal_tick_ms(tick) - wal_tick_ms(t->last_tick);
                if (type != WAL_MSG_TXN_ROLLBACK && idle > t->keepalive_ms) {
                        t->state = WAL_TXN_EXPIRED;
                        txn_unlist(w, t);
                        atomic_fetch_add(&w->metrics.txn_expired, 1);
                        return wal_error_set(&op->err, -ETIME, 0,
                                             "transaction %llu expired: idle %llu ms, "
                                             "keepalive %u ms", (unsigned long long)t->id,
                                             (unsigned long long)idle, t->keepalive_ms);
                }
                t->last_tick = tick;
                if (type == WAL_MSG_TXN_COMMIT || type == WAL_MSG_TXN_ROLLBACK) {
                        t->state = WAL_TXN_DONE;
                        txn_unlist(w, t);
                }
        }
        return wal_msg_set_txn(msg, t->id, t->keepalive_ms);
}

/* timetick's part before the rest of the chain: takes append_lock (held
 * when this returns, whatever it returns), then stamps @msg.  0 or a
 * refusal. */
static int timetick_stamp(wal *w, struct wal_append_op *op, wal_msg *msg)
{
        pthread_mutex_lock(&w->append_lock);
        if (atomic_load(&w->fenced))
                return wal_error_set(&op->err, -ESTALE, 0,
                                     "fenced: a newer term owns channel \"%s\"", w->channel);
        /* The physical part from the coarse clock, or for a transaction's
         * messages the precise one (see "Time tick"). */
        uint64_t tick = next_tick_at(w, op->txn ? walu_realtime_ms() : walu_realtime_coarse_ms());
        if (op->txn) {
                int r = txn_stamp(w, op, msg, tick);
                if (r < 0)
                        return r;
        }
        wal_msg_set_time_tick(msg, tick);
        wal_msg_set_term(msg, w->term);
        wal_msg_set_last_confirmed(msg, wal_current_last_confirmed(w));
        return 0;
}

/* timetick's part after the rest of the chain returned @r: releases
 * append_lock.  @is_tick: the message was a time tick (read before it was
 * passed on: once the backend accepted it, @op may complete and go). */
static void timetick_done(wal *w, int r, bool is_tick)
{
        if (r == 0 && !is_tick)
                w->appended_since_tick++;
        pthread_mutex_unlock(&w->append_lock);
}

int wal_builtin_timetick(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx)
{
        bool is_tick = wal_msg_type(msg) == WAL_MSG_TIME_TICK;
        int r = timetick_stamp(w, op, msg);
        if (r == 0)
                r = wal_chain_call(w, op, msg, idx + 1);
        timetick_done(w, r, is_tick);
        return r;
}

/* ---- Metrics ---- */

int wal_builtin_metrics(wal *w, struct wal_append_op *op, wal_msg *msg, size_t idx)
{
        return wal_chain_call(w, op, msg, idx + 1);
}

/* ---- The built-ins fused ---- */

/* What wal_chain_call(w, op, msg, 0) does when the chain is the four
 * built-ins alone (no user interceptor): retry, validate, timetick, metrics
 * and the backend's append, in that order, as direct calls instead of one
 * indirect call per link.  Each link's effects are the same, in the same
 * order: op->depth counts the links entered as wal_chain_call() does (the
 * done hooks of those run at completion), retry arms the redo from link 1
 * (a redo goes through wal_chain_call()), and a refusal that retry takes
 * over is scheduled as wal_builtin_retry() schedules it. */
int wal_builtins_append(wal *w, struct wal_append_op *op, wal_msg *msg)
{
        op->retry_armed = true;
        op->retry_idx = 1;
        if (op->depth < 2)
                op->depth = 2;
        int r = validate_check(w, op, msg);
        if (r == 0) {
                op->depth = op->depth < 3 ? 3 : op->depth;
                bool is_tick = wal_msg_type(msg) == WAL_MSG_TIME_TICK;
                r = timetick_stamp(w, op, msg);
                if (r == 0) {
                        op->depth = 4;
                        r = wal_backend_append(w, op, msg);
                }
                timetick_done(w, r, is_tick);
        }
        return retry_take_over(w, op, r);
}

void wal_builtin_metrics_done(wal *w, struct wal_append_op *op,
                              const struct wal_append_result *res)
{
        struct wal_metrics *m = &w->metrics;
        if (res->status == 0) {
                atomic_fetch_add(&m->appends_ok, 1);
                /* Measured by validate on the appending thread: the
                 * message's lines need not come over to this one. */
                atomic_fetch_add(&m->append_bytes, op->bytes);
                if (op->tick)
                        atomic_fetch_add(&m->ticks, 1);
        } else {
                atomic_fetch_add(&m->appends_failed, 1);
        }
        if (!op->internal)
                wal_hist_add(&m->append_latency, res->latency_ns);
}
