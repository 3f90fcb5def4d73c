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
static int control(wal_txn *t, enum wal_msg_type type, wal_msg **ret_msg, wal_error **reterr)
{
        wal_msg *m = NULL;
        int r = wal_msg_new(type, NULL, 0, &m);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "out of memory");
        if (t->vchannel)
                r = wal_msg_set_vchannel(m, t->vchannel);
        if (r == 0)
                r = wal_msg_set_txn(m, t->id, t->keepalive_ms);
        if (r == 0)
                r = wal_adaptor_append_wait(t->w, m, t, true, 0, ret_msg, reterr);
        else
                wal_error_set(reterr, r, 0, "out of memory");
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
        r = wal_msg_set_vchannel(m, t->vchannel);
        if (r == 0)
                r = wal_msg_set_txn(m, t->id, t->keepalive_ms);
        if (r == 0)
                r = wal_adaptor_append(t->w, m, false, t, false, done, userdata, reterr);
        else
                wal_error_set(reterr, r, 0, "out of memory");
        wal_msg_unref(m);
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

static void set_state(wal_txn *t, enum wal_txn_state st)
{
        pthread_mutex_lock(&t->w->append_lock);
        if (t->state == WAL_TXN_OPEN)
                t->state = st;
        pthread_mutex_unlock(&t->w->append_lock);
}

int wal_adaptor_txn_commit(wal_txn *t, wal_msg **ret_msg, wal_error **reterr)
{
        wal *w = t->w;
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

int wal_adaptor_txn_rollback(wal_txn *t, wal_error **reterr)
{
        wal *w = t->w;
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
