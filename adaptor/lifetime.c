/* SPDX-License-Identifier: MIT */
/*
 * adaptor/lifetime.c: the lifetime gate every adaptor object carries.
 *
 * A state (open, closing, closed) and a count of public calls running inside
 * the object.  A call enters only while the object is open; close flips the
 * state first (so new calls get -ESHUTDOWN), then waits for the calls already
 * inside to leave.  Exactly one caller performs a close; a concurrent second
 * closer (a parent closing its child while the owner closes it too) waits
 * until the first finished, so after either returns the object is closed.
 *
 * Entering and leaving are two atomic operations each, no lock: a call
 * counts itself in, then looks at the state; close sets the state, then
 * looks at the count (all sequentially consistent, so at least one of the
 * two sees the other).  A call that leaves while the object is closing
 * takes the lock to wake the closer, which waits under the same lock.
 */
#include <errno.h>
#include <pthread.h>

#include "adaptor/adaptor.h"

void wal_life_init(struct wal_life *l)
{
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        atomic_init(&l->state, WAL_LIFE_OPEN);
        atomic_init(&l->inflight, 0);
}

void wal_life_done(struct wal_life *l)
{
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->cond);
}

int wal_life_enter(struct wal_life *l)
{
        atomic_fetch_add(&l->inflight, 1);
        if (atomic_load(&l->state) == WAL_LIFE_OPEN)
                return 0;
        wal_life_leave(l);
        return -ESHUTDOWN;
}

void wal_life_leave(struct wal_life *l)
{
        if (atomic_fetch_sub(&l->inflight, 1) == 1 &&
            atomic_load(&l->state) != WAL_LIFE_OPEN) {
                pthread_mutex_lock(&l->lock);
                pthread_cond_broadcast(&l->cond);
                pthread_mutex_unlock(&l->lock);
        }
}

bool wal_life_begin_close(struct wal_life *l)
{
        bool mine = false;
        pthread_mutex_lock(&l->lock);
        if (atomic_load(&l->state) == WAL_LIFE_OPEN) {
                atomic_store(&l->state, WAL_LIFE_CLOSING);
                mine = true;
        } else {
                while (atomic_load(&l->state) != WAL_LIFE_CLOSED)
                        pthread_cond_wait(&l->cond, &l->lock);
        }
        pthread_mutex_unlock(&l->lock);
        return mine;
}

void wal_life_wait_idle(struct wal_life *l)
{
        pthread_mutex_lock(&l->lock);
        while (atomic_load(&l->inflight) > 0)
                pthread_cond_wait(&l->cond, &l->lock);
        pthread_mutex_unlock(&l->lock);
}

void wal_life_set_closed(struct wal_life *l)
{
        pthread_mutex_lock(&l->lock);
        atomic_store(&l->state, WAL_LIFE_CLOSED);
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

bool wal_life_is_open(struct wal_life *l)
{
        return atomic_load(&l->state) == WAL_LIFE_OPEN;
}
