/* SPDX-License-Identifier: MIT */
/*
 * tests/local/test-faults-util.h: helpers shared by the local backend's
 * fault suites (test-faults*.c): open a channel through the backend
 * interface, append and wait, read everything back, and a fault-injecting
 * I/O shim installed with local_io_set_ops().
 *
 * Everything is static: each suite is its own executable.
 */
#ifndef TEST_FAULTS_UTIL_H
#define TEST_FAULTS_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <walimpls/walimpls.h>
#include "impls/local/local.h"
#include "utility/walu.h"
#include "t-helpers.h"

extern const struct walimpls_builder walimpls_local;

/* ---- The fault shim ---- */

struct shim {
        atomic_int fail_fdatasync;   /* errno every fdatasync returns (0: none) */
        atomic_int fail_write;       /* errno every data write returns */
        atomic_int fail_fallocate;   /* errno every fallocate returns */
        atomic_int short_max;        /* > 0: writes shortened to this many bytes */
        atomic_int cancel_sync_once; /* 1: the next io_uring fdatasync reads -ECANCELED */
        atomic_int probe_err;        /* uring_probe result */
        atomic_int n_fdatasync;      /* fdatasyncs seen (both paths) */
        atomic_int n_short;          /* writes shortened */
        atomic_int n_writes;         /* data writes seen (both paths) */
        atomic_llong pread_eio_from; /* > 0: preads reaching past this offset get -EIO */
        atomic_int pread_eio_count;  /* ... this many times (-1: always) */
        atomic_int n_pread_eio;      /* preads failed so */
        /* The preparer's writes (local.prepare=zero): all-zero buffers of
         * 4 KiB or more; no other write the backend makes looks like that. */
        atomic_int fail_zero_write;  /* errno every such write returns */
        atomic_int n_zero_writes;    /* such writes seen (failed ones too) */
        atomic_int n_zero_fail;      /* ... failed so */
        atomic_int zero_fd;          /* fd of the last one (0: none yet) */
        atomic_llong zero_bytes;     /* bytes they wrote */
        atomic_int zero_delay_us;    /* each such write first sleeps this long */
};

static struct shim shim;

/* Optional: when set, shim_fdatasync counts the call and then returns what
 * this returns (@d: the kernel-backed table, for the real call). */
static int (*shim_fdatasync_hook)(int fd, const struct local_io_ops *d);
/* Optional: told of every io_uring completion (its kind and fd) first. */
static void (*shim_uring_seen)(enum local_io_kind kind, int fd);

static int shim_open(void *ctx, const char *path, int flags, mode_t mode)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->open(d->ctx, path, flags, mode);
}

static int shim_close(void *ctx, int fd)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->close(d->ctx, fd);
}

static ssize_t shim_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        long long from = atomic_load(&shim.pread_eio_from);
        if (from > 0 && (long long)off + (long long)len > from) {
                int left = atomic_load(&shim.pread_eio_count);
                while (left != 0) {
                        if (left < 0 || atomic_compare_exchange_weak(&shim.pread_eio_count,
                                                                     &left, left - 1)) {
                                atomic_fetch_add(&shim.n_pread_eio, 1);
                                return -EIO;
                        }
                }
        }
        return d->pread(d->ctx, fd, buf, len, off);
}

static bool shim_all_zero(const void *buf, size_t len)
{
        const uint8_t *p = buf;
        if (len < 4096)
                return false;
        for (size_t i = 0; i < len; i++)
                if (p[i])
                        return false;
        return true;
}

static ssize_t shim_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        if (shim_all_zero(buf, len)) {
                atomic_fetch_add(&shim.n_zero_writes, 1);
                atomic_store(&shim.zero_fd, fd);
                int delay = atomic_load(&shim.zero_delay_us);
                if (delay > 0)
                        usleep((useconds_t)delay);
                int ze = atomic_load(&shim.fail_zero_write);
                if (ze) {
                        atomic_fetch_add(&shim.n_zero_fail, 1);
                        return -ze;
                }
                ssize_t n = d->pwrite(d->ctx, fd, buf, len, off);
                if (n > 0)
                        atomic_fetch_add(&shim.zero_bytes, n);
                return n;
        }
        atomic_fetch_add(&shim.n_writes, 1);
        int e = atomic_load(&shim.fail_write);
        if (e)
                return -e;
        int m = atomic_load(&shim.short_max);
        if (m > 0 && len > (size_t)m) {
                atomic_fetch_add(&shim.n_short, 1);
                len = (size_t)m;
        }
        return d->pwrite(d->ctx, fd, buf, len, off);
}

static int shim_fdatasync(void *ctx, int fd)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        atomic_fetch_add(&shim.n_fdatasync, 1);
        if (shim_fdatasync_hook)
                return shim_fdatasync_hook(fd, d);
        int e = atomic_load(&shim.fail_fdatasync);
        if (e)
                return -e;
        return d->fdatasync(d->ctx, fd);
}

static int shim_fsync(void *ctx, int fd)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->fsync(d->ctx, fd);
}

static int shim_fallocate(void *ctx, int fd, off_t off, off_t len)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        int e = atomic_load(&shim.fail_fallocate);
        if (e)
                return -e;
        return d->fallocate(d->ctx, fd, off, len);
}

static int shim_ftruncate(void *ctx, int fd, off_t len)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->ftruncate(d->ctx, fd, len);
}

static int shim_rename(void *ctx, const char *from, const char *to)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->rename(d->ctx, from, to);
}

static int shim_unlink(void *ctx, const char *path)
{
        (void)ctx;
        const struct local_io_ops *d = local_io_default_ops();
        return d->unlink(d->ctx, path);
}

/* io_uring completions: the kernel did the work; the shim rewrites what the
 * writer is told. */
static int shim_uring_result(void *ctx, enum local_io_kind kind, int fd, size_t len, int res)
{
        (void)ctx;
        if (shim_uring_seen)
                shim_uring_seen(kind, fd);
        if (kind == LOCAL_IO_FDATASYNC) {
                atomic_fetch_add(&shim.n_fdatasync, 1);
                int e = atomic_load(&shim.fail_fdatasync);
                if (e)
                        return -e;
                if (atomic_exchange(&shim.cancel_sync_once, 0))
                        return -ECANCELED;
                return res;
        }
        atomic_fetch_add(&shim.n_writes, 1);
        int e = atomic_load(&shim.fail_write);
        if (e)
                return -e;
        int m = atomic_load(&shim.short_max);
        if (m > 0 && res > m && len > (size_t)m) {
                atomic_fetch_add(&shim.n_short, 1);
                return m;
        }
        return res;
}

static int shim_uring_probe(void *ctx)
{
        (void)ctx;
        return atomic_load(&shim.probe_err);
}

static const struct local_io_ops shim_ops = {
        .open = shim_open,
        .close = shim_close,
        .pread = shim_pread,
        .pwrite = shim_pwrite,
        .fdatasync = shim_fdatasync,
        .fsync = shim_fsync,
        .fallocate = shim_fallocate,
        .ftruncate = shim_ftruncate,
        .rename = shim_rename,
        .unlink = shim_unlink,
        .uring_result = shim_uring_result,
        .uring_probe = shim_uring_probe,
        .ctx = NULL,
};

WALU_UNUSED static void shim_install(void)
{
        memset(&shim, 0, sizeof(shim));
        shim_fdatasync_hook = NULL;
        shim_uring_seen = NULL;
        local_io_set_ops(&shim_ops);
}

/* ---- Opening ---- */

struct tf {
        char *dir;                       /* temporary local.dir */
        struct walimpls_opener *o;
};

/* local.lanes for the openers tf_build() makes (NULL: the default). */
static const char *tf_lanes;
/* local.read_spin_us for them (NULL: the default). */
static const char *tf_read_spin;

/* Build an opener on @t->dir with local.io=@io and @seg-byte segments. */
static void tf_build(struct tf *t, const char *io, const char *seg)
{
        wal_config *cfg = NULL;
        wal_error *err = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_eq(wal_config_set(cfg, "local.dir", t->dir, &err), 0, "%s",
                     wal_error_message(err));
        cr_assert_eq(wal_config_set(cfg, "local.io", io, &err), 0, "%s", wal_error_message(err));
        cr_assert_eq(wal_config_set(cfg, "local.segment_bytes", seg, &err), 0, "%s",
                     wal_error_message(err));
        if (tf_lanes)
                cr_assert_eq(wal_config_set(cfg, "local.lanes", tf_lanes, &err), 0, "%s",
                             wal_error_message(err));
        if (tf_read_spin)
                cr_assert_eq(wal_config_set(cfg, "local.read_spin_us", tf_read_spin, &err), 0,
                             "%s", wal_error_message(err));
        int r = walimpls_local.build(cfg, &t->o, &err);
        cr_assert_eq(r, 0, "build: %s", wal_error_message(err));
        wal_config_free(cfg);
}

static void tf_setup(struct tf *t, const char *io, const char *seg)
{
        memset(t, 0, sizeof(*t));
        cr_assert_eq(t_tmpdir_new("wal-faults", &t->dir), 0);
        tf_build(t, io, seg);
}

static void tf_teardown(struct tf *t)
{
        if (t->o)
                t->o->ops->close(t->o);
        t->o = NULL;
        local_io_set_ops(NULL);
        if (t->dir) {
                t_rm_rf(t->dir);
                free(t->dir);
        }
        t->dir = NULL;
}

static int tf_open(struct tf *t, const char *channel, enum wal_access access, int64_t term,
                   struct walimpls_wal **ret, wal_error **err)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = term, .access = access };
        return t->o->ops->open(t->o, &opts, ret, err);
}

/* ---- Appending ---- */

struct ack {
        int status;
        struct wal_msgid id;
        char msg[512];
        bool done;
        uint64_t seq;                    /* completion order, from 1 */
};

struct acks {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        size_t n, pending;
        uint64_t n_done;
        struct ack *a;
};

struct ack_arg {
        struct acks *set;
        size_t i;
};

static void acks_init(struct acks *s, size_t n)
{
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->n = n;
        s->pending = 0;
        s->n_done = 0;
        s->a = calloc(n, sizeof(*s->a));
        cr_assert(s->a);
}

static void acks_done(struct acks *s)
{
        free(s->a);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
}

static void on_ack(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct ack_arg *aa = arg;
        struct acks *s = aa->set;
        pthread_mutex_lock(&s->mu);
        struct ack *a = &s->a[aa->i];
        a->status = status;
        a->id = id;
        snprintf(a->msg, sizeof(a->msg), "%s", err ? wal_error_message(err) : "");
        a->done = true;
        a->seq = ++s->n_done;
        s->pending--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        free(aa);
}

/* Payload of record @i: "rec-<i>-" then filler up to @len bytes. */
static size_t payload_of(size_t i, size_t len, char *buf)
{
        int n = snprintf(buf, len, "rec-%zu-", i);
        for (size_t k = (size_t)n; k < len; k++)
                buf[k] = (char)('a' + (i + k) % 26);
        return len;
}

/* Append record @i (@len payload bytes) without waiting.  Returns what
 * append returned; on 0 the ack slot @i will be filled. */
static int tf_append(struct walimpls_wal *w, struct acks *s, size_t i, size_t len)
{
        char *buf = malloc(len ? len : 1);
        cr_assert(buf);
        payload_of(i, len, buf);
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, buf, len, &m), 0);
        free(buf);
        struct ack_arg *aa = malloc(sizeof(*aa));
        cr_assert(aa);
        *aa = (struct ack_arg){ s, i };
        pthread_mutex_lock(&s->mu);
        s->pending++;
        pthread_mutex_unlock(&s->mu);
        int r = w->ops->append(w, m, on_ack, aa);
        if (r < 0) {
                pthread_mutex_lock(&s->mu);
                s->pending--;
                pthread_mutex_unlock(&s->mu);
                free(aa);
        }
        wal_msg_unref(m);
        return r;
}

static void tf_wait(struct acks *s)
{
        pthread_mutex_lock(&s->mu);
        while (s->pending)
                pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
}

/* ---- Reading ---- */

/* Read every record from the start; checks each payload is payload_of(its
 * index) for some index and stores the indexes in order.  @len: payload
 * length used when writing.  Returns the count. */
static size_t tf_read_all(struct walimpls_wal *w, size_t len, size_t *idx, size_t max)
{
        struct walimpls_read_opts ro = { .name = "check",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc = NULL;
        wal_error *err = NULL;
        int r = w->ops->read(w, &ro, &sc, &err);
        cr_assert_eq(r, 0, "read: %s", wal_error_message(err));
        size_t n = 0;
        char *want = malloc(len ? len : 1);
        cr_assert(want);
        for (;;) {
                wal_msg *m = NULL;
                r = sc->ops->next(sc, 0, &m, &err);
                if (r == -ETIMEDOUT)
                        break;
                cr_assert_eq(r, 0, "next: %s", wal_error_message(err));
                size_t plen = 0;
                const char *p = wal_msg_payload(m, &plen);
                size_t i = 0;
                cr_assert_eq(sscanf(p, "rec-%zu-", &i), 1);
                cr_assert_eq(plen, len);
                payload_of(i, len, want);
                cr_assert_eq(memcmp(p, want, len), 0, "record %zu payload differs", i);
                cr_assert_lt(n, max);
                if (idx)
                        idx[n] = i;
                n++;
                wal_msg_unref(m);
        }
        free(want);
        sc->ops->close(sc);
        return n;
}

#endif /* TEST_FAULTS_UTIL_H */
