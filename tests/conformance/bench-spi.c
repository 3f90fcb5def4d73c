/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/bench-spi.c: raw backend throughput through the SPI.
 *
 * The baseline the adaptor's overhead is measured against: the same backend,
 * the same fixture as the conformance suite, no adaptor in between.  Three
 * figures: pipelined appends (every append issued without waiting, time until
 * the last completion), synchronous appends (one in flight; latency
 * percentiles), and a full scan of what was written.  A benchmark, never a
 * test: it asserts nothing beyond "the calls succeeded".
 *
 * Usage: WAL_TEST_BACKEND=<name> bench-spi [messages [payload-bytes]]
 * (defaults: memory, 200000 messages, 100 bytes; synchronous runs use a
 * twentieth of the messages).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <walimpls/walimpls.h>
#include <wal/wal-registry.h>

#include "t-helpers.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Completions count atomically; the condvar is used only while someone waits,
 * so pipelined completions cost the backend's thread one atomic add. */
struct counter {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        atomic_long done, failed;
        atomic_bool waiting;
};

static void count_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)id;
        (void)err;
        struct counter *c = arg;
        if (status < 0)
                atomic_fetch_add(&c->failed, 1);
        atomic_fetch_add(&c->done, 1);
        if (atomic_load(&c->waiting)) {
                pthread_mutex_lock(&c->lock);
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->lock);
        }
}

static void wait_for(struct counter *c, long n)
{
        if (atomic_load(&c->done) >= n)
                return;
        pthread_mutex_lock(&c->lock);
        atomic_store(&c->waiting, true);
        while (atomic_load(&c->done) < n)
                pthread_cond_wait(&c->cond, &c->lock);
        atomic_store(&c->waiting, false);
        pthread_mutex_unlock(&c->lock);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static int die(const char *what, int r, wal_error *e)
{
        fprintf(stderr, "bench-spi: %s: %s%s%s\n", what, strerror(r < 0 ? -r : r),
                e ? ": " : "", e ? wal_error_message(e) : "");
        wal_error_free(e);
        return 1;
}

int main(int argc, char **argv)
{
        const char *backend = getenv("WAL_TEST_BACKEND");
        if (!backend || !*backend)
                backend = "memory";
        long n = argc > 1 ? atol(argv[1]) : 200000;
        long len = argc > 2 ? atol(argv[2]) : 100;
        if (n <= 0 || len < 0) {
                fprintf(stderr, "usage: bench-spi [messages [payload-bytes]]\n");
                return 2;
        }
        wal_error *e = NULL;
        const struct walimpls_builder *b = NULL;
        int r = wal_registry_find(backend, &b, &e);
        if (r < 0)
                return die("backend lookup", r, e);
        const struct t_backend_fixture *fx = t_backend_fixture_find(backend);
        if (!fx)
                return die("no fixture row in tests/helpers/t-backends.c", -ENOENT, NULL);
        wal_config *cfg = NULL;
        void *state = NULL;
        if (wal_config_new(&cfg) < 0)
                return die("config", -ENOMEM, NULL);
        if (fx->setup && (r = fx->setup(cfg, &state)) < 0)
                return die("fixture setup", r, NULL);
        struct walimpls_opener *o = NULL;
        if ((r = b->build(cfg, &o, &e)) < 0)
                return die("build", r, e);

        char ch[64];
        t_unique_name("bench", ch, sizeof(ch));
        struct walimpls_open_opts oo = { .channel = ch, .term = 1, .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        if ((r = o->ops->open(o, &oo, &w, &e)) < 0)
                return die("open", r, e);

        char *payload = calloc(1, (size_t)len + 1);
        memset(payload, 'p', (size_t)len);
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_DATA, payload, (size_t)len, &m) < 0 ||
            wal_msg_set_prop(m, "k", "v") < 0)
                return die("message", -ENOMEM, NULL);

        /* Pipelined: issue everything, wait for the last completion. */
        struct counter c = { .lock = PTHREAD_MUTEX_INITIALIZER,
                             .cond = PTHREAD_COND_INITIALIZER };
        double t0 = now_s();
        for (long i = 0; i < n; i++)
                while ((r = w->ops->append(w, m, count_cb, &c)) == -EAGAIN)
                        t_sleep_ms(1);
        wait_for(&c, n);
        double t1 = now_s();
        printf("%s pipelined: %ld x %ld B in %.3f s = %.0f msg/s (%ld failed)\n", backend, n,
               len, t1 - t0, (double)n / (t1 - t0), atomic_load(&c.failed));

        /* Synchronous: one in flight. */
        long ns = n / 20 > 0 ? n / 20 : 1;
        double *lat = calloc((size_t)ns, sizeof(*lat));
        long base = atomic_load(&c.done);
        t0 = now_s();
        for (long i = 0; i < ns; i++) {
                double s0 = now_s();
                if ((r = w->ops->append(w, m, count_cb, &c)) < 0)
                        return die("append", r, NULL);
                wait_for(&c, base + i + 1);
                lat[i] = now_s() - s0;
        }
        t1 = now_s();
        qsort(lat, (size_t)ns, sizeof(*lat), cmp_double);
        printf("%s synchronous: %ld in %.3f s = %.0f msg/s, latency p50 %.1f us p99 %.1f us\n",
               backend, ns, t1 - t0, (double)ns / (t1 - t0), lat[ns / 2] * 1e6,
               lat[(ns * 99) / 100] * 1e6);

        /* Scan everything back. */
        struct walimpls_read_opts ro = { .name = "bench", .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *s = NULL;
        if ((r = w->ops->read(w, &ro, &s, &e)) < 0)
                return die("read", r, e);
        long got = 0, want = n + ns - atomic_load(&c.failed);
        t0 = now_s();
        while (got < want) {
                wal_msg *g = NULL;
                if ((r = s->ops->next(s, 10000, &g, &e)) < 0)
                        return die("next", r, e);
                wal_msg_unref(g);
                got++;
        }
        t1 = now_s();
        printf("%s scan: %ld in %.3f s = %.0f msg/s\n", backend, got, t1 - t0,
               (double)got / (t1 - t0));

        s->ops->close(s);
        w->ops->close(w);
        o->ops->close(o);
        if (fx->teardown)
                fx->teardown(state);
        wal_config_free(cfg);
        wal_msg_unref(m);
        free(lat);
        free(payload);
        return 0;
}
