/* SPDX-License-Identifier: MIT */
/*
 * adaptor/txn.c: transactions on a read-write wal.
 *
 * A transaction is a begin message, body messages and a commit (or
 * rollback), all carrying its ID; readers assemble them (adaptor/scanner.c).
 * The writer side keeps each open transaction on the wal's list, under the
 * append lock, for two reasons: the timetick interceptor refuses a body or a
 * commit that comes after the keepalive (-ETIME, measured between time ticks
 * exactly as readers measure it), and the last-confirmed ID of every message
 * stamped while it is open stays at or below its begin, so a reader that
 * resumes from a last-confirmed ID still sees the whole transaction.
 *
 * Commit waits for the bodies in flight: a body that failed rolls the
 * transaction back (-EIO), and no body can be written after its commit.
 * The background thread of the wal appends a rollback for a transaction
 * that expired while idle, so readers can drop it early.
 *
 * An asynchronous end (wal_txn_commit_async(); wal_txn_commit() and
 * wal_txn_rollback() inside an append callback, where waiting would wait
 * for the callback's own completion) waits for nothing: it marks the
 * transaction, and the completion of its last body in flight appends the
 * commit or rollback (wal_txn_body_finished(), on the thread running
 * callbacks); with no body in flight the call appends it itself.  The
 * control message's own callback (end_done) reports the outcome and frees
 * the transaction, which until then the pending end owns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "adaptor/adaptor.h"
#include "utility/walu.h"

void wal_txn_free_internal(wal_txn *t)
{
        if (!t)
                return;
        wal *w = t->w;
        pthread_mutex_lock(&w->append_lock);
        if (t->listed) {
                for (struct wal_txn **pp = &w->txns; *pp; pp = &(*pp)->next) {
                        if (*pp == t) {
                                *pp = t->next;
                                break;
                        }
                }
                t->listed = false;
        }
        pthread_mutex_unlock(&w->append_lock);
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        free(t->vchannel);
        free(t);
        wal_unref_internal(w);
}

/* Append a control message (begin, commit, rollback) and wait for it. */
/* Give @m (borrowed, mutable) @t's vchannel (or none) and transaction ID,
 * as every message of the transaction carries them.  0, or a negative errno
 * with *@reterr set. */
static int txn_stamp(wal_txn *t, wal_msg *m, wal_error **reterr)
{
        int r = wal_msg_set_vchannel(m, t->vchannel);
        if (r == 0)
                r = wal_msg_set_txn(m, t->id, t->keepalive_ms);
        if (r < 0)
                wal_error_set(reterr, r, 0, "stamping transaction %llu on a message: %s",
                              (unsigned long long)t->id, wal_strerror(r));
        return r;
}

static int control(wal_txn *t, enum wal_msg_type type, wal_msg **ret_msg, wal_error **reterr)
{
        wal_msg *m = NULL;
        int r = wal_msg_new(type, NULL, 0, &m);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "out of memory");
        r = txn_stamp(t, m, reterr);
        if (r == 0)
                r = wal_adaptor_append_wait(t->w, m, t, true, 0, ret_msg, reterr);
        wal_msg_unref(m);
        return r;
}

int wal_adaptor_txn_begin(wal *w, const char *vchannel, uint32_t keepalive_ms,
                          wal_txn **ret, wal_error **reterr)
{
        if (vchannel && !walimpls_channel_name_valid(vchannel))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "vchannel \"%.64s\" is not a valid name", vchannel);
        wal_txn *t = calloc(1, sizeof(*t));
        if (!t)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        if (vchannel && !(t->vchannel = strdup(vchannel))) {
                free(t);
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        }
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->cond, NULL);
        atomic_fetch_add(&w->refs, 1);
        t->w = w;
        t->id = atomic_fetch_add(&w->next_txn_id, 1);
        t->keepalive_ms = keepalive_ms ? keepalive_ms
                                       : (uint32_t)WALU_MIN(w->txn_keepalive_ms, UINT32_MAX);
        t->lc_floor = WAL_MSGID_NONE;
        int r = control(t, WAL_MSG_TXN_BEGIN, NULL, reterr);
        if (r < 0) {
                wal_error_prefix(reterr, "beginning a transaction: ");
                wal_txn_free_internal(t);
                return r;
        }
        atomic_fetch_add(&w->metrics.txn_begun, 1);
        *ret = t;
        return 0;
}

int wal_adaptor_txn_append(wal_txn *t, wal_msg *msg, wal_append_done_fn *done,
                           void *userdata, wal_error **reterr)
{
        wal_msg *m = NULL;
        int r = wal_msg_copy(msg, &m);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "copying the message: %s", wal_strerror(r));
        r = txn_stamp(t, m, reterr);
        if (r == 0)
                r = wal_adaptor_append(t->w, m, false, t, false, done, userdata, reterr);
        wal_msg_unref(m);
        return r;
}

static void set_state(wal_txn *t, enum wal_txn_state st)
{
        pthread_mutex_lock(&t->w->append_lock);
        if (t->state == WAL_TXN_OPEN)
                t->state = st;
        pthread_mutex_unlock(&t->w->append_lock);
}

/* The completion of an asynchronous end's control message. */
static void end_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        wal_txn *t = arg;
        wal *w = t->w;
        wal_error *own = NULL;
        if (t->end_type == WAL_MSG_TXN_COMMIT && t->end_sent == WAL_MSG_TXN_ROLLBACK) {
                own = wal_error_new(-EIO, 0, "transaction %llu rolled back: a body failed (%s)",
                                    (unsigned long long)t->id, wal_strerror(t->body_error));
                status = -EIO;
                msg = NULL;
                err = own;
        } else if (t->end_type == WAL_MSG_TXN_ROLLBACK && status == -ETIME) {
                status = 0;        /* expired: invisible to readers already */
                err = NULL;
        }
        if (t->end_sent == WAL_MSG_TXN_COMMIT && status == 0)
                atomic_fetch_add(&w->metrics.txn_committed, 1);
        else
                atomic_fetch_add(&w->metrics.txn_rolled_back, 1);
        if (t->end_done)
                t->end_done(t->end_userdata, status, msg, err);
        wal_error_free(own);
        wal_txn_free_internal(t);
}

/* Append the control message of an asynchronous end (no body in flight).
 * 0: end_done() will run; < 0: refused, and @t is still the caller's. */
static int end_start(wal_txn *t, wal_error **reterr)
{
        pthread_mutex_lock(&t->lock);
        int body_error = t->body_error;
        pthread_mutex_unlock(&t->lock);
        t->end_sent = body_error < 0 ? WAL_MSG_TXN_ROLLBACK : t->end_type;
        wal_msg *m = NULL;
        int r = wal_msg_new(t->end_sent, NULL, 0, &m);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "out of memory");
        r = txn_stamp(t, m, reterr);
        if (r == 0)
                r = wal_adaptor_append(t->w, m, false, t, true, end_done, t, reterr);
        wal_msg_unref(m);
        return r;
}

/* Report a refused asynchronous end as its callback would, and free @t. */
static void end_refused(wal_txn *t, int r, wal_error *err)
{
        if (t->end_type == WAL_MSG_TXN_COMMIT && t->end_sent == WAL_MSG_TXN_ROLLBACK) {
                wal_error_free(err);
                err = wal_error_new(-EIO, 0, "transaction %llu rolled back: a body failed (%s)",
                                    (unsigned long long)t->id, wal_strerror(t->body_error));
                r = -EIO;
        }
        atomic_fetch_add(&t->w->metrics.txn_rolled_back, 1);
        if (t->end_done)
                t->end_done(t->end_userdata, r, NULL, err);
        wal_error_free(err);
        wal_txn_free_internal(t);
}

void wal_txn_body_finished(wal_txn *t, int status)
{
        pthread_mutex_lock(&t->lock);
        if (status < 0 && t->body_error == 0)
                t->body_error = status;
        bool start = --t->inflight == 0 && t->end_pending;
        if (start)
                t->end_pending = false;
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
        /* Without a pending end a synchronous commit may free @t now. */
        if (!start)
                return;
        wal_error *err = NULL;
        int r = end_start(t, &err);
        if (r < 0)
                end_refused(t, r, err);
}

/* Mark @t for an asynchronous end of @type, or start it now when no body
 * is in flight.  0: @done runs once, later; < 0: it never runs.  Consumes
 * @t in every case. */
static int end_async(wal_txn *t, enum wal_msg_type type, wal_append_done_fn *done,
                     void *userdata, wal_error **reterr)
{
        set_state(t, WAL_TXN_COMMITTING);
        pthread_mutex_lock(&t->lock);
        t->end_type = type;
        t->end_done = done;
        t->end_userdata = userdata;
        bool later = t->inflight > 0;
        t->end_pending = later;
        pthread_mutex_unlock(&t->lock);
        if (later)
                return 0;
        int r = end_start(t, reterr);
        if (r < 0) {
                atomic_fetch_add(&t->w->metrics.txn_rolled_back, 1);
                wal_txn_free_internal(t);
        }
        return r;
}

static void wait_bodies(wal_txn *t, int *body_error)
{
        pthread_mutex_lock(&t->lock);
        while (t->inflight > 0)
                pthread_cond_wait(&t->cond, &t->lock);
        *body_error = t->body_error;
        pthread_mutex_unlock(&t->lock);
}

int wal_adaptor_txn_commit(wal_txn *t, wal_msg **ret_msg, wal_error **reterr)
{
        wal *w = t->w;
        if (wal_adaptor_in_callback()) {
                /* Its bodies, and its commit, complete on this thread after
                 * the callback returns: waiting would wait for ever. */
                unsigned long long id = (unsigned long long)t->id;
                end_async(t, WAL_MSG_TXN_ROLLBACK, NULL, NULL, NULL);
                return wal_error_set(reterr, -EDEADLK, 0,
                                     "wal_txn_commit() of transaction %llu on \"%s\" inside "
                                     "an append callback would wait for completions that run "
                                     "after the callback returns; the transaction is rolled "
                                     "back; use wal_txn_commit_async() there", id, w->channel);
        }
        set_state(t, WAL_TXN_COMMITTING);
        int body_error;
        wait_bodies(t, &body_error);
        int r;
        if (body_error < 0) {
                control(t, WAL_MSG_TXN_ROLLBACK, NULL, NULL);
                atomic_fetch_add(&w->metrics.txn_rolled_back, 1);
                r = wal_error_set(reterr, -EIO, 0,
                                  "transaction %llu rolled back: a body failed (%s)",
                                  (unsigned long long)t->id, wal_strerror(body_error));
        } else {
                r = control(t, WAL_MSG_TXN_COMMIT, ret_msg, reterr);
                if (r == 0)
                        atomic_fetch_add(&w->metrics.txn_committed, 1);
                else
                        wal_error_prefix(reterr, "committing transaction %llu: ",
                                         (unsigned long long)t->id);
        }
        wal_txn_free_internal(t);
        return r;
}

int wal_adaptor_txn_commit_async(wal_txn *t, wal_append_done_fn *done, void *userdata,
                                 wal_error **reterr)
{
        unsigned long long id = (unsigned long long)t->id;
        int r = end_async(t, WAL_MSG_TXN_COMMIT, done, userdata, reterr);
        if (r < 0)
                wal_error_prefix(reterr, "committing transaction %llu: ", id);
        return r;
}

int wal_adaptor_txn_rollback(wal_txn *t, wal_error **reterr)
{
        wal *w = t->w;
        if (wal_adaptor_in_callback()) {
                /* Rolled back without waiting: readers never see it whether
                 * or not the rollback message is written. */
                wal_error *err = NULL;
                int r = end_async(t, WAL_MSG_TXN_ROLLBACK, NULL, NULL, &err);
                if (r == -ETIME) {
                        wal_error_free(err);
                        return 0;
                }
                if (err) {
                        if (reterr && !*reterr)
                                *reterr = err;
                        else
                                wal_error_free(err);
                }
                return r;
        }
        set_state(t, WAL_TXN_COMMITTING);
        int body_error;
        wait_bodies(t, &body_error);
        wal_error *err = NULL;
        int r = control(t, WAL_MSG_TXN_ROLLBACK, NULL, &err);
        if (r == -ETIME) {
                /* Expired: invisible to readers already, which is the point. */
                wal_error_free(err);
                err = NULL;
                r = 0;
        }
        if (err) {
                if (reterr && !*reterr)
                        *reterr = err;
                else
                        wal_error_free(err);
        }
        atomic_fetch_add(&w->metrics.txn_rolled_back, 1);
        wal_txn_free_internal(t);
        return r;
}
