/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/harness.c: backend lookup, fixture and SPI shortcuts for
 * the conformance suite (conformance.h).
 *
 * conf_init() is the suite's .init: it runs in each test's criterion worker,
 * so every case gets its own fixture (a fresh server or directory when the
 * backend needs one) and its own opener.  A backend that is not registered,
 * or has no fixture row, fails the case loudly: the suite never skips a
 * backend it was asked to test.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "conformance.h"

struct conf conf;

void conf_init(void)
{
        memset(&conf, 0, sizeof(conf));
        conf.backend = getenv("WAL_TEST_BACKEND");
        cr_assert(conf.backend && *conf.backend,
                  "WAL_TEST_BACKEND is not set: name the backend to test "
                  "(tests/conformance/meson.build sets it per test())");

        wal_error *e = NULL;
        int r = wal_registry_find(conf.backend, &conf.b, &e);
        cr_assert_eq(r, 0, "backend '%s' is not registered in this build: %s",
                     conf.backend, wal_error_message(e));
        cr_assert_str_eq(conf.b->name, conf.backend);

        conf.fx = t_backend_fixture_find(conf.backend);
        cr_assert_not_null(conf.fx, "backend '%s' has no fixture row in "
                           "tests/helpers/t-backends.c", conf.backend);

        cr_assert_eq(wal_config_new(&conf.cfg), 0);
        if (conf.fx->setup) {
                r = conf.fx->setup(conf.cfg, &conf.state);
                cr_assert_eq(r, 0, "fixture setup of '%s' failed: %s", conf.backend,
                             strerror(-r));
        }
        r = conf.b->build(conf.cfg, &conf.o, &e);
        cr_assert_eq(r, 0, "builder '%s' failed: %d %s", conf.backend, r,
                     wal_error_message(e));
        cr_assert_not_null(conf.o, "builder '%s' returned no opener", conf.backend);
        cr_assert_not_null(conf.o->ops);
        cr_assert_eq(conf.o->builder, conf.b, "opener.builder is not the builder");
}

void conf_fini(void)
{
        if (conf.o)
                conf.o->ops->close(conf.o);
        conf.o = NULL;
        if (conf.fx && conf.fx->teardown)
                conf.fx->teardown(conf.state);
        wal_config_free(conf.cfg);
        conf.cfg = NULL;
}

int conf_fail(char *err, const char *fmt, ...)
{
        if (err && !err[0]) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, CONF_ERRLEN, fmt, ap);
                va_end(ap);
        }
        return -1;
}

void conf_channel(const char *prefix, char buf[64])
{
        if (t_unique_name(prefix, buf, 64) < 0)
                abort();
}

static void take_error(wal_error *e, char *err, const char *what)
{
        if (e && err && !err[0])
                snprintf(err, CONF_ERRLEN, "%s: %s", what, wal_error_message(e));
        wal_error_free(e);
}

int conf_open(struct walimpls_opener *o, const char *channel, int64_t term,
              enum wal_access access, struct walimpls_wal **ret, char *err)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = term,
                                           .access = access };
        wal_error *e = NULL;
        int r = o->ops->open(o, &opts, ret, &e);
        take_error(e, err, "open");
        return r;
}

wal_msg *conf_msg(long idx, const char *fmt, ...)
{
        char *text = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (n < 0)
                abort();
        wal_msg *m = NULL;
        char num[32];
        snprintf(num, sizeof(num), "%ld", idx);
        if (wal_msg_new(WAL_MSG_DATA, text, (size_t)n, &m) < 0 ||
            wal_msg_set_prop(m, "idx", num) < 0)
                abort();
        free(text);
        return m;
}

long conf_msg_idx(const wal_msg *m)
{
        const char *v = wal_msg_prop(m, "idx");
        if (!v)
                return -1;
        char *end;
        long x = strtol(v, &end, 10);
        return *end ? -1 : x;
}

struct done_lock {
        pthread_mutex_t m;
        pthread_cond_t c;
};

struct conf_done *conf_done_new(void)
{
        struct conf_done *d = calloc(1, sizeof(*d));
        struct done_lock *l = calloc(1, sizeof(*l));
        if (!d || !l)
                abort();
        pthread_mutex_init(&l->m, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->c, &ca);
        pthread_condattr_destroy(&ca);
        d->lock = l;
        d->status = 1;
        d->id = WAL_MSGID_NONE;
        return d;
}

void conf_done_free(struct conf_done *d)
{
        if (!d)
                return;
        struct done_lock *l = d->lock;
        pthread_mutex_destroy(&l->m);
        pthread_cond_destroy(&l->c);
        free(l);
        free(d);
}

void conf_done_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)err;
        struct conf_done *d = arg;
        struct done_lock *l = d->lock;
        pthread_mutex_lock(&l->m);
        d->status = status;
        d->id = id;
        atomic_fetch_add(&d->calls, 1);
        pthread_cond_broadcast(&l->c);
        pthread_mutex_unlock(&l->m);
}

int conf_done_wait(struct conf_done *d, int timeout_ms)
{
        struct done_lock *l = d->lock;
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        int r = 0;
        pthread_mutex_lock(&l->m);
        while (atomic_load(&d->calls) == 0 && r == 0)
                if (pthread_cond_timedwait(&l->c, &l->m, &dl) == ETIMEDOUT &&
                    atomic_load(&d->calls) == 0)
                        r = -ETIMEDOUT;
        pthread_mutex_unlock(&l->m);
        return r;
}

int conf_append_sync(struct walimpls_wal *w, wal_msg *m, struct wal_msgid *ret_id)
{
        struct conf_done *d = conf_done_new();
        int r = w->ops->append(w, m, conf_done_cb, d);
        if (r < 0) {
                conf_done_free(d);
                return r;
        }
        if (conf_done_wait(d, 30000) < 0)
                return -ETIMEDOUT; /* leak @d: the completion may still come */
        r = d->status;
        if (r == 0 && ret_id)
                *ret_id = d->id;
        conf_done_free(d);
        return r;
}

int conf_read(struct walimpls_wal *w, const char *name, enum wal_deliver_policy policy,
              struct wal_msgid id, struct walimpls_scanner **ret, char *err)
{
        struct walimpls_read_opts opts = {
                .name = name,
                .deliver = { .policy = policy, .id = id },
        };
        wal_error *e = NULL;
        int r = w->ops->read(w, &opts, ret, &e);
        take_error(e, err, "read");
        return r;
}

int conf_next(struct walimpls_scanner *s, int timeout_ms, wal_msg **ret, char *err)
{
        wal_error *e = NULL;
        int r = s->ops->next(s, timeout_ms, ret, &e);
        take_error(e, err, "next");
        return r;
}

const char *conf_id(struct wal_msgid id)
{
        static __thread char bufs[4][WAL_MSGID_STRLEN];
        static __thread unsigned i;
        char *b = bufs[i++ % 4];
        if (wal_msgid_is_none(id))
                snprintf(b, WAL_MSGID_STRLEN, "NONE");
        else if (wal_msgid_format(id, b, WAL_MSGID_STRLEN) < 0)
                snprintf(b, WAL_MSGID_STRLEN, "?");
        return b;
}
