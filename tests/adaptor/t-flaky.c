/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/t-flaky.c: the "flaky" test backend (t-flaky.h).
 *
 * A walimpls backend registered at run time that wraps the memory backend
 * and, depending on flaky_mode, refuses some appends (-EAGAIN), completes
 * them with a retriable -ETIMEDOUT or a fatal -EIO without writing, or
 * delays completions after the inner backend already shows the message,
 * or holds completions back and runs them later on a thread of its own, the
 * last one before its append returned (FLAKY_HOLD, FLAKY_RELEASE).
 * It is a backend like any other to the adaptor: nothing of libwal's own
 * code is replaced.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <walimpls/walimpls.h>
#include <wal/wal-registry.h>
#include "t-flaky.h"

atomic_int flaky_mode;
void (*flaky_release_wait)(void);

struct flaky_opener {
        struct walimpls_opener base;
        struct walimpls_opener *inner;
};

/* A completion held back (FLAKY_HOLD, FLAKY_RELEASE). */
struct held_done {
        walimpls_append_done_fn *done;
        void *arg;
        int status;
        struct wal_msgid id;
        struct held_done *next;
};

struct flaky_wal {
        struct walimpls_wal base;
        struct walimpls_wal *inner;
        atomic_int n;
        pthread_mutex_t lock;
        struct held_done *held, **held_tail;     /* in completion order */
        struct held_done *releasing;             /* the releaser's list */
        bool has_releaser;
        pthread_t releaser;
};

/* The inner (memory) backend completes inline: keep the outcome. */
static void hold_fn(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)err;
        struct held_done *h = arg;
        h->status = status;
        h->id = id;
}

static void *release_main(void *arg)
{
        struct flaky_wal *fw = arg;
        walimpls_done_batch_begin();
        struct held_done *h = fw->releasing;
        while (h) {
                struct held_done *next = h->next;
                h->done(h->arg, h->status, h->id, NULL);
                free(h);
                h = next;
        }
        walimpls_done_batch_end();
        return NULL;
}

static int append_held(struct flaky_wal *fw, wal_msg *msg, walimpls_append_done_fn *done,
                       void *arg, bool release)
{
        struct held_done *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        *h = (struct held_done){ .done = done, .arg = arg };
        int r = fw->inner->ops->append(fw->inner, msg, hold_fn, h);
        if (r < 0) {
                free(h);
                return r;
        }
        pthread_mutex_lock(&fw->lock);
        *fw->held_tail = h;
        fw->held_tail = &h->next;
        if (release) {
                cr_assert(!fw->has_releaser, "one FLAKY_RELEASE per wal");
                fw->releasing = fw->held;
                fw->held = NULL;
                fw->held_tail = &fw->held;
                cr_assert_eq(pthread_create(&fw->releaser, NULL, release_main, fw), 0);
                fw->has_releaser = true;
        }
        pthread_mutex_unlock(&fw->lock);
        if (release && flaky_release_wait)
                flaky_release_wait();
        return 0;
}

/* FLAKY_DELAY: the inner backend shows the message to its scanners, then the
 * completion reaches the adaptor a little later. */
struct delayed_done {
        walimpls_append_done_fn *done;
        void *arg;
};

static void delayed_done_fn(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct delayed_done dd = *(struct delayed_done *)arg;
        free(arg);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
        dd.done(dd.arg, status, id, err);
}

static int fl_append(struct walimpls_wal *bw, wal_msg *msg, walimpls_append_done_fn *done,
                     void *arg)
{
        struct flaky_wal *fw = (struct flaky_wal *)bw;
        int n = atomic_fetch_add(&fw->n, 1);
        int mode = atomic_load(&flaky_mode);
        if (mode == FLAKY_ALWAYS_TIMEOUT || (mode == FLAKY_PATTERN && n % 5 == 4)) {
                wal_error *e = wal_error_new(-ETIMEDOUT, WAL_ERROR_RETRIABLE, "flaky: timed out");
                done(arg, -ETIMEDOUT, WAL_MSGID_NONE, e);
                wal_error_free(e);
                return 0;
        }
        if (mode == FLAKY_ALWAYS_EIO) {
                done(arg, -EIO, WAL_MSGID_NONE, NULL);
                return 0;
        }
        if (mode == FLAKY_PATTERN && n % 3 == 2)
                return -EAGAIN;
        if (mode == FLAKY_HOLD || mode == FLAKY_RELEASE)
                return append_held(fw, msg, done, arg, mode == FLAKY_RELEASE);
        if (mode == FLAKY_DELAY) {
                struct delayed_done *dd = malloc(sizeof(*dd));
                if (!dd)
                        return -ENOMEM;
                *dd = (struct delayed_done){ done, arg };
                int r = fw->inner->ops->append(fw->inner, msg, delayed_done_fn, dd);
                if (r < 0)
                        free(dd);
                return r;
        }
        return fw->inner->ops->append(fw->inner, msg, done, arg);
}

static int fl_read(struct walimpls_wal *bw, const struct walimpls_read_opts *opts,
                   struct walimpls_scanner **ret, wal_error **reterr)
{
        struct flaky_wal *fw = (struct flaky_wal *)bw;
        return fw->inner->ops->read(fw->inner, opts, ret, reterr);
}

static int fl_info(struct walimpls_wal *bw, struct walimpls_info *ret, wal_error **reterr)
{
        struct flaky_wal *fw = (struct flaky_wal *)bw;
        return fw->inner->ops->info(fw->inner, ret, reterr);
}

static void fl_wal_close(struct walimpls_wal *bw)
{
        struct flaky_wal *fw = (struct flaky_wal *)bw;
        if (fw->has_releaser)
                pthread_join(fw->releaser, NULL);
        /* Completions still held are completed (cancelled) here, once. */
        while (fw->held) {
                struct held_done *h = fw->held;
                fw->held = h->next;
                h->done(h->arg, -ECANCELED, WAL_MSGID_NONE, NULL);
                free(h);
        }
        fw->inner->ops->close(fw->inner);
        pthread_mutex_destroy(&fw->lock);
        walimpls_wal_done(&fw->base);
        free(fw);
}

static const struct walimpls_wal_ops fl_wal_ops = {
        .version = WALIMPLS_VERSION,
        .append = fl_append,
        .read = fl_read,
        .info = fl_info,
        .close = fl_wal_close,
};

static int fl_open(struct walimpls_opener *bo, const struct walimpls_open_opts *opts,
                   struct walimpls_wal **ret, wal_error **reterr)
{
        struct flaky_opener *fo = (struct flaky_opener *)bo;
        struct flaky_wal *fw = calloc(1, sizeof(*fw));
        if (!fw)
                return -ENOMEM;
        int r = fo->inner->ops->open(fo->inner, opts, &fw->inner, reterr);
        pthread_mutex_init(&fw->lock, NULL);
        fw->held_tail = &fw->held;
        if (r == 0)
                r = walimpls_wal_init(&fw->base, &fl_wal_ops, bo, opts);
        if (r < 0) {
                if (fw->inner)
                        fw->inner->ops->close(fw->inner);
                pthread_mutex_destroy(&fw->lock);
                free(fw);
                return r;
        }
        *ret = &fw->base;
        return 0;
}

static void fl_opener_close(struct walimpls_opener *bo)
{
        struct flaky_opener *fo = (struct flaky_opener *)bo;
        fo->inner->ops->close(fo->inner);
        free(fo);
}

static const struct walimpls_opener_ops fl_opener_ops = {
        .version = WALIMPLS_VERSION,
        .open = fl_open,
        .close = fl_opener_close,
};

static const struct walimpls_builder fl_builder;

static int fl_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        const struct walimpls_builder *mem = NULL;
        int r = wal_registry_find("memory", &mem, reterr);
        if (r < 0)
                return r;
        struct flaky_opener *fo = calloc(1, sizeof(*fo));
        if (!fo)
                return -ENOMEM;
        r = mem->build(cfg, &fo->inner, reterr);
        if (r < 0) {
                free(fo);
                return r;
        }
        fo->base = (struct walimpls_opener){ .ops = &fl_opener_ops, .builder = &fl_builder };
        *ret = &fo->base;
        return 0;
}

static const struct walimpls_builder fl_builder = {
        .version = WALIMPLS_VERSION,
        .name = "flaky",
        .description = "test backend: memory with injected append failures",
        .build = fl_build,
};

wal_opener *flaky_opener(const char *const *props)
{
        int r = wal_registry_add(&fl_builder, NULL);
        cr_assert(r == 0 || r == -EEXIST);
        wal_config *cfg = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        for (size_t i = 0; props && props[i]; i++)
                cr_assert_eq(wal_config_set_pair(cfg, props[i], NULL), 0);
        wal_opener *o = NULL;
        cr_assert_eq(wal_opener_new("flaky", cfg, &o, NULL), 0);
        wal_config_free(cfg);
        return o;
}

