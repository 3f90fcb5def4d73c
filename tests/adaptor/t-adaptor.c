/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/t-adaptor.c: helpers for the adaptor suites (t-adaptor.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "t-adaptor.h"
#include "t-helpers.h"

const char *ta_backend(void)
{
        const char *b = getenv("WAL_TEST_BACKEND");
        return b && *b ? b : "memory";
}

/* Fixture state per opener, for ta_opener_close(). */
static pthread_mutex_t fx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        wal_opener *o;
        const struct t_backend_fixture *fx;
        void *state;
} fx_open[64];

int ta_opener(const char *const *props, wal_opener **ret)
{
        const struct t_backend_fixture *fx = t_backend_fixture_find(ta_backend());
        if (!fx)
                return -ENOENT;
        wal_config *cfg = NULL;
        void *state = NULL;
        int r = wal_config_new(&cfg);
        if (r < 0)
                return r;
        if (fx->setup && (r = fx->setup(cfg, &state)) < 0) {
                wal_config_free(cfg);
                return r;
        }
        for (size_t i = 0; props && props[i] && r == 0; i++)
                r = wal_config_set_pair(cfg, props[i], NULL);
        if (r == 0)
                r = wal_opener_new(ta_backend(), cfg, ret, NULL);
        wal_config_free(cfg);
        if (r < 0) {
                if (fx->teardown)
                        fx->teardown(state);
                return r;
        }
        pthread_mutex_lock(&fx_lock);
        for (size_t i = 0; i < sizeof(fx_open) / sizeof(fx_open[0]); i++) {
                if (!fx_open[i].o) {
                        fx_open[i].o = *ret;
                        fx_open[i].fx = fx;
                        fx_open[i].state = state;
                        state = NULL;
                        break;
                }
        }
        pthread_mutex_unlock(&fx_lock);
        if (state) { /* table full: should not happen in these suites */
                wal_opener_close(*ret);
                if (fx->teardown)
                        fx->teardown(state);
                return -ENOSPC;
        }
        return 0;
}

void ta_opener_close(wal_opener *o)
{
        if (!o)
                return;
        wal_opener_close(o);
        pthread_mutex_lock(&fx_lock);
        for (size_t i = 0; i < sizeof(fx_open) / sizeof(fx_open[0]); i++) {
                if (fx_open[i].o == o) {
                        if (fx_open[i].fx->teardown)
                                fx_open[i].fx->teardown(fx_open[i].state);
                        fx_open[i].o = NULL;
                        break;
                }
        }
        pthread_mutex_unlock(&fx_lock);
}

wal_msg *ta_msg(const char *text, const char *vchannel)
{
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_DATA, text, strlen(text), &m) < 0)
                return NULL;
        if (vchannel && wal_msg_set_vchannel(m, vchannel) < 0)
                return wal_msg_unref(m);
        return m;
}

int ta_append(wal *w, const char *text, const char *vchannel, wal_msg **ret_msg)
{
        wal_msg *m = ta_msg(text, vchannel);
        if (!m)
                return -ENOMEM;
        int r = wal_append_wait(w, m, ret_msg, NULL);
        wal_msg_unref(m);
        return r;
}

const char *ta_text(const wal_msg *m)
{
        size_t len = 0;
        const char *p = wal_msg_payload(m, &len);
        return p ? p : "";
}

void ta_count_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct ta_counter *c = arg;
        (void)err;
        if ((status == 0) != (msg != NULL))
                atomic_fetch_add(&c->bad, 1);
        if (status == 0)
                atomic_fetch_add(&c->ok, 1);
        else if (status == -ECANCELED)
                atomic_fetch_add(&c->cancelled, 1);
        else
                atomic_fetch_add(&c->failed, 1);
        atomic_fetch_add(&c->calls, 1);
}

int ta_wait_calls(struct ta_counter *c, int n, int ms)
{
        for (int i = 0; i < ms; i++) {
                if (atomic_load(&c->calls) >= n)
                        return 0;
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
        }
        return atomic_load(&c->calls) >= n ? 0 : -ETIMEDOUT;
}
