/* SPDX-License-Identifier: MIT */
/*
 * walimpls/walimpls.c: helpers for backend authors (walimpls/walimpls.h).
 *
 * The notifier is the one piece of shared machinery: every scanner needs a
 * blocking wait with a timeout, an interrupt, and a file descriptor an event
 * loop can poll.  A sequence number read before checking for data closes the
 * race between "found nothing" and "went to sleep".
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <walimpls/walimpls.h>
#include "utility/walu.h"

int walimpls_wal_init(struct walimpls_wal *w, const struct walimpls_wal_ops *ops,
                      struct walimpls_opener *o, const struct walimpls_open_opts *opts)
{
        if (!w || !ops || !opts || !opts->channel)
                return -EINVAL;
        char *name = strdup(opts->channel);
        if (!name)
                return -ENOMEM;
        *w = (struct walimpls_wal){
                .ops = ops,
                .opener = o,
                .channel = name,
                .term = opts->term,
                .access = opts->access,
        };
        return 0;
}

void walimpls_wal_done(struct walimpls_wal *w)
{
        if (!w)
                return;
        free(w->channel);
        w->channel = NULL;
}

int walimpls_flush(struct walimpls_wal *w, int timeout_ms, wal_error **reterr)
{
        if (!w || !w->ops)
                return -EINVAL;
        if (w->ops->version < 3 || !w->ops->flush)
                return -EOPNOTSUPP;
        return w->ops->flush(w, timeout_ms, reterr);
}

/* The completion bracket of this thread (walimpls_done_batch_begin). */
static _Thread_local struct {
        int depth;
        void (*fn)(void *arg);
        void *arg;
} done_batch;

void walimpls_done_batch_begin(void)
{
        done_batch.depth++;
}

/* Run the remembered call, if any (it may defer again: it is outside the
 * bracket by then only if the depth is 0). */
static void done_batch_run(void)
{
        void (*fn)(void *) = done_batch.fn;
        void *arg = done_batch.arg;
        done_batch.fn = NULL;
        done_batch.arg = NULL;
        if (fn)
                fn(arg);
}

void walimpls_done_batch_end(void)
{
        if (done_batch.depth > 0 && --done_batch.depth == 0)
                done_batch_run();
}

bool walimpls_done_defer(void (*fn)(void *arg), void *arg)
{
        if (done_batch.depth == 0 || !fn)
                return false;
        if (done_batch.fn && (done_batch.fn != fn || done_batch.arg != arg))
                done_batch_run();
        done_batch.fn = fn;
        done_batch.arg = arg;
        return true;
}

bool walimpls_has_append_take(const struct walimpls_wal *w)
{
        return w && w->ops && w->ops->version >= 4 && w->ops->append_take;
}

int walimpls_append_take(struct walimpls_wal *w, wal_msg *msg, walimpls_append_done_fn *done,
                         void *arg)
{
        if (!w || !w->ops)
                return -EINVAL;
        if (walimpls_has_append_take(w))
                return w->ops->append_take(w, msg, done, arg);
        return w->ops->append(w, msg, done, arg);
}

int walimpls_scanner_init(struct walimpls_scanner *s, const struct walimpls_scanner_ops *ops,
                          struct walimpls_wal *w, const char *name)
{
        if (!s || !ops)
                return -EINVAL;
        char *n = strdup(name ? name : "");
        if (!n)
                return -ENOMEM;
        *s = (struct walimpls_scanner){ .ops = ops, .wal = w, .name = n };
        return 0;
}

void walimpls_scanner_done(struct walimpls_scanner *s)
{
        if (!s)
                return;
        free(s->name);
        s->name = NULL;
}

bool walimpls_channel_name_valid(const char *name)
{
        if (!name || !*name || name[0] == '.' || name[0] == '-')
                return false;
        size_t n = 0;
        for (const char *p = name; *p; p++, n++) {
                char c = *p;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                if (!ok || n >= 200)
                        return false;
        }
        return true;
}

/* ---- Notifier ---- */

struct notifier_impl {
        pthread_mutex_t lock;
        pthread_cond_t cond;
};

int walimpls_notifier_init(struct walimpls_notifier *n)
{
        if (!n)
                return -EINVAL;
        struct notifier_impl *impl = calloc(1, sizeof(*impl));
        if (!impl)
                return -ENOMEM;
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (efd < 0) {
                int r = -errno;
                free(impl);
                return r;
        }
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&impl->cond, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_init(&impl->lock, NULL);
        *n = (struct walimpls_notifier){ .efd = efd, .impl = impl };
        return 0;
}

void walimpls_notifier_done(struct walimpls_notifier *n)
{
        if (!n || !n->impl)
                return;
        struct notifier_impl *impl = n->impl;
        pthread_mutex_destroy(&impl->lock);
        pthread_cond_destroy(&impl->cond);
        free(impl);
        if (n->efd >= 0)
                close(n->efd);
        n->impl = NULL;
        n->efd = -1;
}

uint64_t walimpls_notifier_seq(struct walimpls_notifier *n)
{
        struct notifier_impl *impl = n->impl;
        pthread_mutex_lock(&impl->lock);
        uint64_t s = n->seq;
        pthread_mutex_unlock(&impl->lock);
        return s;
}

static void efd_kick(int efd)
{
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: it is readable anyway. */
        while (write(efd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

void walimpls_notifier_signal(struct walimpls_notifier *n)
{
        struct notifier_impl *impl = n->impl;
        pthread_mutex_lock(&impl->lock);
        n->seq++;
        pthread_cond_broadcast(&impl->cond);
        pthread_mutex_unlock(&impl->lock);
        efd_kick(n->efd);
}

void walimpls_notifier_interrupt(struct walimpls_notifier *n)
{
        struct notifier_impl *impl = n->impl;
        pthread_mutex_lock(&impl->lock);
        n->interrupted = true;
        pthread_cond_broadcast(&impl->cond);
        pthread_mutex_unlock(&impl->lock);
        efd_kick(n->efd);
}

void walimpls_notifier_drain(struct walimpls_notifier *n)
{
        uint64_t v;
        while (read(n->efd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
}

int walimpls_notifier_wait(struct walimpls_notifier *n, uint64_t seen, int timeout_ms)
{
        struct notifier_impl *impl = n->impl;
        int r = 0;
        struct timespec dl = walu_deadline(timeout_ms > 0 ? timeout_ms : 0);
        pthread_mutex_lock(&impl->lock);
        while (n->seq == seen && !n->interrupted) {
                if (timeout_ms == 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                int e = timeout_ms < 0 ? pthread_cond_wait(&impl->cond, &impl->lock)
                                       : pthread_cond_timedwait(&impl->cond, &impl->lock, &dl);
                if (e == ETIMEDOUT && n->seq == seen && !n->interrupted) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (n->interrupted)
                r = -ECANCELED;
        pthread_mutex_unlock(&impl->lock);
        if (r != -ECANCELED)
                walimpls_notifier_drain(n);
        return r;
}
