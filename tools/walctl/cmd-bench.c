/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-bench.c: `walctl bench`, a load generator.
 *
 * Writers: --writers N threads, each appending with the blocking
 * wal_append_wait() to channel (i mod --channels); or --async N: one thread
 * keeping N appends in flight with wal_append_take() (each record handed
 * over, no copy), round-robin over the channels.  Append latency is from
 * the call to durability (the return of wal_append_wait, or the completion
 * callback).
 *
 * Readers: --readers N threads, reader j tailing channel (j mod --channels)
 * from "latest", opened before any writer starts.  Every payload begins with
 * the CLOCK_MONOTONIC time of its append call (8 bytes, native order: the
 * readers are in this process), so a reader measures append-to-delivery
 * latency.  When the writers stop, readers drain until they have seen every
 * record acknowledged on their channel (or DRAIN_MS passes).
 *
 * Latencies go into log-linear histograms (64 sub-buckets per power of two:
 * about 1.6 % resolution), one per thread, merged at the end, so recording
 * costs no lock and no allocation.  The main thread only waits: on the
 * signalfd (SIGINT/SIGTERM stop the run early; the summary still prints) with
 * a one-second timeout that drives the progress line, which is drawn on
 * standard error only when that is a terminal.  The summary goes to standard
 * output: text, or with --json one object (WALCTL.md).
 *
 * When the run ends (its time, its count or a signal), the appends in flight
 * get STOP_GRACE_MS to complete.  A backend that does not answer (a server
 * that hangs or went away) would keep them, and so the writers, waiting for
 * ever: then the opener is closed, which ends every append in flight (and
 * the scanners) while the handles stay valid, and the run fails with 69,
 * saying the backend did not complete them.  A second signal closes at once.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <walimpls/walimpls.h>

#include "walctl.h"

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)
#define DRAIN_MS 5000
#define STOP_GRACE_MS 5000    /* appends in flight when the run ends get this long */
#define PROGRESS_MS 1000
#define MAX_THREADS 1024

/* ---- Histograms ---- */

struct hist {
        uint64_t n;
        uint64_t max;
        uint64_t count[HIST_BUCKETS];
};

static size_t hist_index(uint64_t v)
{
        if (v < HIST_SUB)
                return (size_t)v;
        unsigned msb = 63u - (unsigned)__builtin_clzll(v);
        unsigned shift = msb - HIST_SUB_BITS;
        return (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) & (HIST_SUB - 1));
}

/* The smallest value of bucket @i. */
static uint64_t hist_value(size_t i)
{
        if (i < HIST_SUB)
                return i;
        unsigned shift = (unsigned)(i / HIST_SUB) - 1;
        return ((uint64_t)HIST_SUB | (i % HIST_SUB)) << shift;
}

static void hist_add(struct hist *h, uint64_t v)
{
        h->count[hist_index(v)]++;
        h->n++;
        if (v > h->max)
                h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
        for (size_t i = 0; i < HIST_BUCKETS; i++)
                into->count[i] += from->count[i];
        into->n += from->n;
        if (from->max > into->max)
                into->max = from->max;
}

/* The value at quantile @q (0..1), in nanoseconds: the middle of its bucket. */
static double hist_quantile(const struct hist *h, double q)
{
        if (!h->n)
                return 0;
        uint64_t rank = (uint64_t)ceil(q * (double)h->n);
        if (rank < 1)
                rank = 1;
        uint64_t seen = 0;
        for (size_t i = 0; i < HIST_BUCKETS; i++) {
                seen += h->count[i];
                if (seen >= rank) {
                        double lo = (double)hist_value(i);
                        double hi = i + 1 < HIST_BUCKETS ? (double)hist_value(i + 1) : lo;
                        double mid = (lo + hi) / 2;
                        return mid > (double)h->max ? (double)h->max : mid;
                }
        }
        return (double)h->max;
}

/* ---- State ---- */

struct bench;

struct worker {
        struct bench *b;
        pthread_t thread;
        size_t index;
        wal *w;                       /* borrowed: the channel's wal */
        wal_scanner *s;               /* readers: owned, opened before any writer starts */
        size_t channel;
        struct hist hist;
        uint64_t done;                /* records appended (writers) / delivered (readers) */
        uint64_t t_done;              /* writers: when the last of its appends completed
                                         (0: never got that far) */
        int status;                   /* first error */
        wal_error *err;               /* owned */
};

struct async_slot {
        struct bench *b;
        uint64_t t0;
        size_t channel;
        uint32_t next_free;
};

struct bench {
        /* options */
        size_t n_channels, n_writers, n_readers, async;
        size_t size;
        double seconds;               /* 0: until count */
        uint64_t count;               /* 0: until seconds */
        bool json;
        bool stats;                   /* --stats: wal_opener_stats_json() after the summary */
        const char *prefix;

        const char *backend;
        wal **wals;                   /* owned, one per channel */
        atomic_uint_fast64_t *acked;  /* per channel: records acknowledged */
        atomic_bool stop;
        atomic_bool readers_stop;
        atomic_uint_fast64_t tickets; /* --count: records handed out */
        atomic_uint_fast64_t appended;/* acknowledged, all channels */
        atomic_uint_fast64_t delivered;
        atomic_int failure;           /* first append error (negative errno) */
        atomic_bool closing;          /* the opener is being closed under the writers:
                                         what fails now is not a failure of the run */

        struct worker *writers, *readers;

        /* --async */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct async_slot *slots;
        uint32_t free_head;           /* UINT32_MAX: none free */
        size_t in_flight;
        bool waiting;
        struct hist async_hist;       /* lock */
        wal_error *async_err;         /* lock */

        uint64_t t_start, t_end;
};

static void fill_payload(char *buf, size_t size, uint64_t t0)
{
        if (size >= sizeof(t0))
                memcpy(buf, &t0, sizeof(t0));
}

/* May another record be appended?  Takes a ticket under --count. */
static bool take_ticket(struct bench *b)
{
        if (atomic_load_explicit(&b->stop, memory_order_relaxed))
                return false;
        if (!b->count)
                return true;
        if (atomic_fetch_add(&b->tickets, 1) < b->count)
                return true;
        atomic_store(&b->stop, true);
        return false;
}

static void note_failure(struct bench *b, int status)
{
        if (atomic_load(&b->closing))
                return;
        int zero = 0;
        atomic_compare_exchange_strong(&b->failure, &zero, status);
        atomic_store(&b->stop, true);
}

/* ---- Blocking writers ---- */

static void *writer_main(void *arg)
{
        struct worker *wk = arg;
        struct bench *b = wk->b;
        char *buf = calloc(1, b->size ? b->size : 1);
        if (!buf) {
                wk->status = -ENOMEM;
                note_failure(b, -ENOMEM);
                return NULL;
        }
        memset(buf, 'x', b->size);
        while (take_ticket(b)) {
                uint64_t t0 = walctl_now_ns();
                fill_payload(buf, b->size, t0);
                wal_msg *m = NULL;
                int r = wal_msg_new(WAL_MSG_DATA, buf, b->size, &m);
                if (r == 0)
                        r = wal_append_wait(wk->w, m, NULL, &wk->err);
                wal_msg_unref(m);
                if (r < 0) {
                        wk->status = r;
                        note_failure(b, r);
                        break;
                }
                hist_add(&wk->hist, walctl_now_ns() - t0);
                wk->done++;
                atomic_fetch_add_explicit(&b->acked[wk->channel], 1, memory_order_release);
                atomic_fetch_add_explicit(&b->appended, 1, memory_order_relaxed);
        }
        wk->t_done = walctl_now_ns();
        free(buf);
        return NULL;
}

/* ---- The asynchronous writer ---- */

static void async_done(void *userdata, int status, const wal_msg *msg, const wal_error *err)
{
        struct async_slot *s = userdata;
        struct bench *b = s->b;
        (void)msg;
        uint64_t now = walctl_now_ns();
        if (status == 0) {
                atomic_fetch_add_explicit(&b->acked[s->channel], 1, memory_order_release);
                atomic_fetch_add_explicit(&b->appended, 1, memory_order_relaxed);
        } else {
                note_failure(b, status);
        }
        pthread_mutex_lock(&b->lock);
        if (status == 0)
                hist_add(&b->async_hist, now - s->t0);
        else if (!b->async_err)
                b->async_err = wal_error_copy(err);
        s->next_free = b->free_head;
        b->free_head = (uint32_t)(s - b->slots);
        b->in_flight--;
        if (b->waiting)
                pthread_cond_signal(&b->cond);
        pthread_mutex_unlock(&b->lock);
}

static void *async_main(void *arg)
{
        struct worker *wk = arg;
        struct bench *b = wk->b;
        char *buf = calloc(1, b->size ? b->size : 1);
        if (!buf) {
                note_failure(b, -ENOMEM);
                return NULL;
        }
        memset(buf, 'x', b->size);
        size_t ch = 0;
        while (take_ticket(b)) {
                pthread_mutex_lock(&b->lock);
                while (b->free_head == UINT32_MAX) {
                        b->waiting = true;
                        pthread_cond_wait(&b->cond, &b->lock);
                        b->waiting = false;
                }
                struct async_slot *s = &b->slots[b->free_head];
                b->free_head = s->next_free;
                b->in_flight++;
                pthread_mutex_unlock(&b->lock);

                s->channel = ch;
                s->t0 = walctl_now_ns();
                fill_payload(buf, b->size, s->t0);
                wal_msg *m = NULL;
                int r = wal_msg_new(WAL_MSG_DATA, buf, b->size, &m);
                for (;;) {
                        /* Handed over: on success the reference is the
                         * library's. */
                        if (r == 0 && (r = wal_append_take(b->wals[ch], m, async_done, s,
                                                           &wk->err)) == 0)
                                m = NULL;
                        if (r != -EAGAIN)
                                break;
                        /* Backpressure: wait for one completion, then retry. */
                        wal_error_free(wk->err);
                        wk->err = NULL;
                        pthread_mutex_lock(&b->lock);
                        size_t seen = b->in_flight;
                        while (b->in_flight >= seen && b->in_flight > 1) {
                                b->waiting = true;
                                pthread_cond_wait(&b->cond, &b->lock);
                                b->waiting = false;
                        }
                        pthread_mutex_unlock(&b->lock);
                        r = 0;
                }
                wal_msg_unref(m);
                if (r < 0) {
                        pthread_mutex_lock(&b->lock);
                        s->next_free = b->free_head;
                        b->free_head = (uint32_t)(s - b->slots);
                        b->in_flight--;
                        pthread_mutex_unlock(&b->lock);
                        wk->status = r;
                        note_failure(b, r);
                        break;
                }
                wk->done++;
                ch = (ch + 1) % b->n_channels;
        }
        /* Wait for everything in flight. */
        pthread_mutex_lock(&b->lock);
        while (b->in_flight > 0) {
                b->waiting = true;
                pthread_cond_wait(&b->cond, &b->lock);
                b->waiting = false;
        }
        pthread_mutex_unlock(&b->lock);
        wk->t_done = walctl_now_ns();
        free(buf);
        return NULL;
}

/* ---- Readers ---- */

static void *reader_main(void *arg)
{
        struct worker *wk = arg;
        struct bench *b = wk->b;
        wal_scanner *s = wk->s;
        int r;
        uint64_t drain_deadline = 0;
        for (;;) {
                if (atomic_load_explicit(&b->readers_stop, memory_order_acquire)) {
                        uint64_t now = walctl_now_ns();
                        if (!drain_deadline)
                                drain_deadline = now + (uint64_t)DRAIN_MS * 1000000u;
                        uint64_t target = atomic_load_explicit(&b->acked[wk->channel],
                                                               memory_order_acquire);
                        if (wk->done >= target || now >= drain_deadline)
                                break;
                }
                wal_msg *m = NULL;
                r = wal_scanner_next(s, 100, &m, NULL);
                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0)
                        break;
                uint64_t now = walctl_now_ns();
                size_t len = 0;
                const void *p = wal_msg_payload(m, &len);
                if (len >= sizeof(uint64_t)) {
                        uint64_t t0;
                        memcpy(&t0, p, sizeof(t0));
                        if (now >= t0)
                                hist_add(&wk->hist, now - t0);
                }
                wal_msg_unref(m);
                wk->done++;
                atomic_fetch_add_explicit(&b->delivered, 1, memory_order_relaxed);
        }
        wal_scanner_close(s);
        wk->s = NULL;
        return NULL;
}

/* ---- Progress and summary ---- */

static void fmt_us(char *buf, size_t len, double ns)
{
        double us = ns / 1000.0;
        if (us >= 10000)
                snprintf(buf, len, "%.1f ms", us / 1000.0);
        else
                snprintf(buf, len, "%.0f us", us);
}

/* The progress line: the rate since the last line, or (@final) over the run. */
static void progress(struct bench *b, uint64_t *last_n, uint64_t *last_t, bool final)
{
        uint64_t now = final ? b->t_end : walctl_now_ns();
        uint64_t n = atomic_load(&b->appended);
        double el = (double)(now - b->t_start) / 1e9;
        double dt = final ? el : (double)(now - *last_t) / 1e9;
        double rate = dt > 0 ? (double)(n - (final ? 0 : *last_n)) / dt : 0;
        fprintf(stderr, "\r\033[K%6.1f s  %" PRIu64 " appended  %.0f/s", el, n, rate);
        if (b->n_readers)
                fprintf(stderr, "  %" PRIu64 " delivered", atomic_load(&b->delivered));
        fflush(stderr);
        *last_n = n;
        *last_t = now;
}

static void summary(struct bench *b, const struct hist *ah, const struct hist *dh)
{
        double secs = (double)(b->t_end - b->t_start) / 1e9;
        uint64_t n = ah->n;
        uint64_t delivered = dh->n;
        double rate = secs > 0 ? (double)n / secs : 0;
        double mbs = secs > 0 ? (double)n * (double)b->size / secs / 1e6 : 0;
        if (b->json) {
                walctl_out_puts("{\"v\":1,\"backend\":");
                walctl_json_cstr(b->backend);
                walctl_out_printf(",\"channels\":%zu,\"writers\":%zu,\"async\":%zu,"
                                  "\"readers\":%zu,\"size\":%zu,\"records\":%" PRIu64
                                  ",\"seconds\":%.3f,\"appends_per_s\":%.1f,\"mb_per_s\":%.3f,"
                                  "\"append_p50_us\":%.1f,\"append_p99_us\":%.1f,"
                                  "\"append_p999_us\":%.1f",
                                  b->n_channels, b->async ? 0 : b->n_writers, b->async,
                                  b->n_readers, b->size, n, secs, rate, mbs,
                                  hist_quantile(ah, 0.5) / 1e3, hist_quantile(ah, 0.99) / 1e3,
                                  hist_quantile(ah, 0.999) / 1e3);
                if (b->n_readers)
                        walctl_out_printf(",\"delivered\":%" PRIu64 ",\"delivery_p50_us\":%.1f,"
                                          "\"delivery_p99_us\":%.1f,\"delivery_p999_us\":%.1f",
                                          delivered, hist_quantile(dh, 0.5) / 1e3,
                                          hist_quantile(dh, 0.99) / 1e3,
                                          hist_quantile(dh, 0.999) / 1e3);
                walctl_out_puts("}\n");
                return;
        }
        char p50[32], p99[32], p999[32], mx[32];
        walctl_out_printf("backend %s: %zu channel%s, ", b->backend, b->n_channels,
                          b->n_channels == 1 ? "" : "s");
        if (b->async)
                walctl_out_printf("1 writer with %zu appends in flight", b->async);
        else
                walctl_out_printf("%zu blocking writer%s", b->n_writers,
                                  b->n_writers == 1 ? "" : "s");
        walctl_out_printf(", %zu reader%s, %zu-byte records\n", b->n_readers,
                          b->n_readers == 1 ? "" : "s", b->size);
        walctl_out_printf("appended   %" PRIu64 " records in %.2f s: %.0f appends/s, %.2f MB/s\n",
                          n, secs, rate, mbs);
        fmt_us(p50, sizeof(p50), hist_quantile(ah, 0.5));
        fmt_us(p99, sizeof(p99), hist_quantile(ah, 0.99));
        fmt_us(p999, sizeof(p999), hist_quantile(ah, 0.999));
        fmt_us(mx, sizeof(mx), (double)ah->max);
        walctl_out_printf("append     latency p50 %s  p99 %s  p99.9 %s  max %s\n", p50, p99,
                          p999, mx);
        if (b->n_readers) {
                fmt_us(p50, sizeof(p50), hist_quantile(dh, 0.5));
                fmt_us(p99, sizeof(p99), hist_quantile(dh, 0.99));
                fmt_us(p999, sizeof(p999), hist_quantile(dh, 0.999));
                fmt_us(mx, sizeof(mx), (double)dh->max);
                walctl_out_printf("delivered  %" PRIu64 " records to %zu reader%s\n", delivered,
                                  b->n_readers, b->n_readers == 1 ? "" : "s");
                walctl_out_printf("delivery   latency p50 %s  p99 %s  p99.9 %s  max %s\n", p50,
                                  p99, p999, mx);
        }
}

/* ---- The command ---- */

enum { OPT_CHANNELS = 0x100, OPT_WRITERS, OPT_ASYNC, OPT_SIZE, OPT_SECONDS, OPT_COUNT,
       OPT_READERS, OPT_JSON, OPT_PREFIX,
       OPT_STATS };

static int parse_count(const char *opt, const char *arg, uint64_t min, uint64_t max,
                       uint64_t *ret)
{
        if (walctl_parse_u64(arg, min, max, ret) < 0) {
                char what[64];
                snprintf(what, sizeof(what), "bench %s", opt);
                return walctl_usage_error(what, "'%s' is not a count in %" PRIu64 "..%" PRIu64,
                                          arg, min, max);
        }
        return 0;
}

static int start_threads(struct bench *b)
{
        size_t nw = b->async ? 1 : b->n_writers;
        b->writers = calloc(nw, sizeof(*b->writers));
        b->readers = calloc(b->n_readers ? b->n_readers : 1, sizeof(*b->readers));
        if (!b->writers || !b->readers)
                return -ENOMEM;
        /* Readers tail from LATEST: position every scanner before the first
         * writer starts, or the records appended meanwhile are never seen. */
        for (size_t j = 0; j < b->n_readers; j++) {
                struct worker *wk = &b->readers[j];
                *wk = (struct worker){ .b = b, .index = j, .channel = j % b->n_channels };
                wk->w = b->wals[wk->channel];
                struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
                struct wal_filter f = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };
                int r = wal_read(wk->w, &d, &f, &wk->s, &wk->err);
                if (r < 0) {
                        wk->status = r;
                        note_failure(b, r);
                        return r;
                }
        }
        for (size_t j = 0; j < b->n_readers; j++) {
                struct worker *wk = &b->readers[j];
                if (pthread_create(&wk->thread, NULL, reader_main, wk) != 0)
                        return -EAGAIN;
        }
        b->t_start = walctl_now_ns();
        for (size_t i = 0; i < nw; i++) {
                struct worker *wk = &b->writers[i];
                *wk = (struct worker){ .b = b, .index = i, .channel = i % b->n_channels };
                wk->w = b->wals[wk->channel];
                if (pthread_create(&wk->thread, NULL, b->async ? async_main : writer_main,
                                   wk) != 0)
                        return -EAGAIN;
        }
        return 0;
}

/*
 * Join the writers, waiting at most @grace_ms in all, or until a signal
 * arrives on @sigfd.  @returns true when every writer was joined (the
 * joined ones have thread 0).
 */
static bool join_writers(struct bench *b, size_t nw, int sigfd, int grace_ms)
{
        uint64_t deadline = walctl_now_ns() + (uint64_t)grace_ms * 1000000u;
        for (size_t i = 0; i < nw && b->writers; i++) {
                while (b->writers[i].thread) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 100 * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        if (pthread_timedjoin_np(b->writers[i].thread, NULL, &ts) == 0) {
                                b->writers[i].thread = 0;
                                break;
                        }
                        if (walctl_now_ns() >= deadline || walctl_signal_pending(sigfd))
                                return false;
                }
        }
        return true;
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "channels", required_argument, NULL, OPT_CHANNELS },
                { "writers", required_argument, NULL, OPT_WRITERS },
                { "async", required_argument, NULL, OPT_ASYNC },
                { "size", required_argument, NULL, OPT_SIZE },
                { "seconds", required_argument, NULL, OPT_SECONDS },
                { "count", required_argument, NULL, OPT_COUNT },
                { "readers", required_argument, NULL, OPT_READERS },
                { "json", no_argument, NULL, OPT_JSON },
                { "prefix", required_argument, NULL, OPT_PREFIX },
                { "stats", no_argument, NULL, OPT_STATS },
                { NULL, 0, NULL, 0 },
        };
        struct bench *b = calloc(1, sizeof(*b));
        if (!b)
                return walctl_fail("bench", -ENOMEM, NULL);
        b->n_channels = 1;
        b->n_writers = 1;
        b->size = 100;
        b->prefix = "bench";
        bool writers_given = false, seconds_given = false;
        uint64_t v;
        int rc = 0;
        for (;;) {
                int c = walctl_getopt("bench", argc, argv, "", longopts);
                if (c == -1)
                        break;
                switch (c) {
                case OPT_CHANNELS:
                        rc = parse_count("--channels", optarg, 1, 4096, &v);
                        b->n_channels = (size_t)v;
                        break;
                case OPT_WRITERS:
                        rc = parse_count("--writers", optarg, 1, MAX_THREADS, &v);
                        b->n_writers = (size_t)v;
                        writers_given = true;
                        break;
                case OPT_ASYNC:
                        rc = parse_count("--async", optarg, 1, 1u << 20, &v);
                        b->async = (size_t)v;
                        break;
                case OPT_SIZE:
                        rc = parse_count("--size", optarg, 0, 64u << 20, &v);
                        b->size = (size_t)v;
                        break;
                case OPT_SECONDS: {
                        char *end;
                        errno = 0;
                        double s = strtod(optarg, &end);
                        if (errno || *end || end == optarg || !(s > 0) || s > 86400)
                                rc = walctl_usage_error("bench --seconds", "'%s' is not a "
                                                        "duration in seconds (0 < S <= 86400)",
                                                        optarg);
                        b->seconds = s;
                        seconds_given = true;
                        break;
                }
                case OPT_COUNT:
                        rc = parse_count("--count", optarg, 1, UINT64_MAX / 2, &b->count);
                        break;
                case OPT_READERS:
                        rc = parse_count("--readers", optarg, 0, MAX_THREADS, &v);
                        b->n_readers = (size_t)v;
                        break;
                case OPT_JSON:
                        b->json = true;
                        break;
                case OPT_PREFIX:
                        b->prefix = optarg;
                        break;
                case OPT_STATS:
                        b->stats = true;
                        break;
                default:
                        rc = WALCTL_EXIT_USAGE;
                        break;
                }
                if (rc)
                        goto out_free;
        }
        if (walctl_no_operands("bench", argc, argv, optind)) {
                rc = WALCTL_EXIT_USAGE;
                goto out_free;
        }
        if (b->async && writers_given) {
                rc = walctl_usage_error("bench", "--async and --writers exclude each other "
                                        "(--async is one writer thread)");
                goto out_free;
        }
        if (seconds_given && b->count) {
                rc = walctl_usage_error("bench", "--seconds and --count exclude each other");
                goto out_free;
        }
        if (b->n_readers && b->size < sizeof(uint64_t)) {
                rc = walctl_usage_error("bench", "--readers needs --size of at least %zu "
                                        "bytes (the send time travels in the payload)",
                                        sizeof(uint64_t));
                goto out_free;
        }
        if (!b->count && !seconds_given)
                b->seconds = 10;
        char last[256];
        if (snprintf(last, sizeof(last), "%s-%zu", b->prefix, b->n_channels - 1) >=
                    (int)sizeof(last) || !walimpls_channel_name_valid(last)) {
                rc = walctl_usage_error("bench --prefix", "'%s' makes channel names such as "
                                        "'%.64s' that are not valid (%s)", b->prefix, last,
                                        WALCTL_NAME_RULE);
                goto out_free;
        }

        int sigfd = walctl_signal_fd();
        if (sigfd < 0) {
                rc = walctl_fail("bench: signals", sigfd, NULL);
                goto out_free;
        }
        b->backend = wal_config_get(w->cfg, "backend");
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cond, NULL);
        b->free_head = UINT32_MAX;
        if (b->async) {
                b->slots = calloc(b->async, sizeof(*b->slots));
                if (!b->slots) {
                        rc = walctl_fail("bench", -ENOMEM, NULL);
                        goto out_sig;
                }
                for (size_t i = 0; i < b->async; i++) {
                        b->slots[i].b = b;
                        b->slots[i].next_free = b->free_head;
                        b->free_head = (uint32_t)i;
                }
        }
        b->wals = calloc(b->n_channels, sizeof(*b->wals));
        b->acked = calloc(b->n_channels, sizeof(*b->acked));
        if (!b->wals || !b->acked) {
                rc = walctl_fail("bench", -ENOMEM, NULL);
                goto out_sig;
        }
        wal_opener *o = NULL;
        rc = walctl_opener(w, &o);
        if (rc)
                goto out_sig;
        for (size_t i = 0; i < b->n_channels && !rc; i++) {
                char name[256];
                snprintf(name, sizeof(name), "%s-%zu", b->prefix, i);
                rc = walctl_open_rw(w, o, name, WALCTL_CREATE, &b->wals[i]);
        }
        if (rc)
                goto out_wals;

        bool tty = isatty(STDERR_FILENO);
        int r = start_threads(b);
        if (r < 0) {
                atomic_store(&b->stop, true);
                rc = walctl_fail("bench: threads", r, NULL);
        }
        uint64_t deadline = b->seconds > 0 ? b->t_start + (uint64_t)(b->seconds * 1e9) : 0;
        uint64_t last_n = 0, last_t = b->t_start;
        size_t nw = b->async ? 1 : b->n_writers;
        bool interrupted = false;
        while (!rc && !atomic_load(&b->stop)) {
                uint64_t now = walctl_now_ns();
                if (deadline && now >= deadline)
                        break;
                int ms = PROGRESS_MS;
                if (deadline && (deadline - now) / 1000000u < (uint64_t)ms)
                        ms = (int)((deadline - now) / 1000000u) + 1;
                if (b->count && ms > 50)
                        ms = 50;  /* notice the end of a --count run promptly */
                struct pollfd pfd = { .fd = sigfd, .events = POLLIN };
                if (poll(&pfd, 1, ms) > 0 && walctl_signal_pending(sigfd)) {
                        interrupted = true;
                        break;
                }
                if (tty && walctl_now_ns() - last_t >= (uint64_t)PROGRESS_MS * 1000000u)
                        progress(b, &last_n, &last_t, false);
        }
        atomic_store(&b->stop, true);
        bool abandoned = !join_writers(b, nw, sigfd, STOP_GRACE_MS);
        if (abandoned) {
                /* Ends every append in flight; the wals and scanners stay
                 * valid until their own close below, which then only
                 * releases them. */
                atomic_store(&b->closing, true);
                wal_opener_close(o);
                o = NULL;
        }
        for (size_t i = 0; i < nw; i++)
                if (b->writers && b->writers[i].thread)
                        pthread_join(b->writers[i].thread, NULL);
        /* The run ends when the last writer's last append completed, not when
         * this loop noticed (up to 50 ms later for a --count run, which made
         * short runs look slow). */
        b->t_end = 0;
        for (size_t i = 0; i < nw && b->writers; i++)
                if (b->writers[i].t_done > b->t_end)
                        b->t_end = b->writers[i].t_done;
        if (!b->t_end)
                b->t_end = walctl_now_ns();
        atomic_store_explicit(&b->readers_stop, true, memory_order_release);
        for (size_t j = 0; j < b->n_readers; j++)
                if (b->readers && b->readers[j].thread)
                        pthread_join(b->readers[j].thread, NULL);
        /* Scanners whose thread never started (start_threads failed). */
        for (size_t j = 0; j < b->n_readers; j++)
                if (b->readers && b->readers[j].s)
                        wal_scanner_close(b->readers[j].s);
        if (tty) {
                progress(b, &last_n, &last_t, true);
                fputc('\n', stderr);
        }
        if (interrupted)
                walctl_warn(w, "interrupted: the summary covers the run so far");

        struct hist *ah = calloc(1, sizeof(*ah)), *dh = calloc(1, sizeof(*dh));
        if (!ah || !dh) {
                free(ah);
                free(dh);
                if (!rc)
                        rc = walctl_fail("bench", -ENOMEM, NULL);
                goto out_wals;
        }
        hist_merge(ah, &b->async_hist);
        for (size_t i = 0; i < nw && b->writers; i++)
                hist_merge(ah, &b->writers[i].hist);
        for (size_t j = 0; j < b->n_readers && b->readers; j++)
                hist_merge(dh, &b->readers[j].hist);

        int fail = atomic_load(&b->failure);
        if (!rc && !fail && abandoned) {
                wal_error *err = wal_error_new(-ETIMEDOUT, 0, "the backend did not complete "
                                               "the appends in flight within %d s of the "
                                               "end of the run; closed", STOP_GRACE_MS / 1000);
                rc = walctl_fail("bench", -ETIMEDOUT, err);
        }
        if (!rc && fail) {
                wal_error *err = b->async_err;
                b->async_err = NULL;
                for (size_t i = 0; i < nw && !err && b->writers; i++)
                        if (b->writers[i].err)
                                err = wal_error_copy(b->writers[i].err);
                for (size_t j = 0; j < b->n_readers && !err && b->readers; j++)
                        if (b->readers[j].err)
                                err = wal_error_copy(b->readers[j].err);
                rc = walctl_fail("bench", fail, err);
        }
        if (!rc) {
                summary(b, ah, dh);
                if (b->stats) {
                        /* The channels are still open: their counters and
                         * histograms cover the whole run. */
                        char *js = NULL;
                        int sr = wal_opener_stats_json(o, &js);
                        if (sr < 0)
                                rc = walctl_fail("bench --stats", sr, NULL);
                        else
                                walctl_out_printf("%s\n", js);
                        free(js);
                }
                if (!rc)
                        rc = walctl_out_finish("bench");
        }
        free(ah);
        free(dh);
out_wals:
        for (size_t i = 0; i < b->n_channels; i++)
                wal_close(b->wals[i]);
        wal_opener_close(o);
out_sig:
        close(sigfd);
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->cond);
out_free:
        if (b->writers)
                for (size_t i = 0; i < (b->async ? 1 : b->n_writers); i++)
                        wal_error_free(b->writers[i].err);
        if (b->readers)
                for (size_t j = 0; j < b->n_readers; j++)
                        wal_error_free(b->readers[j].err);
        wal_error_free(b->async_err);
        free(b->writers);
        free(b->readers);
        free(b->slots);
        free(b->wals);
        free(b->acked);
        free(b);
        return rc;
}

const struct walctl_command walctl_cmd_bench = {
        .name = "bench",
        .args = "[OPTIONS]",
        .summary = "load generator: throughput and latency percentiles",
        .help = "Append to channels PREFIX-0 .. PREFIX-(N-1) as fast as the backend\n"
                "acknowledges, optionally with tailing readers, and print throughput and\n"
                "latency percentiles.  A live progress line goes to standard error when\n"
                "it is a terminal; the summary goes to standard output.  SIGINT stops the\n"
                "run early and still prints the summary.  Appends still in flight at the\n"
                "end get 5 s to complete; if the backend does not complete them, walctl\n"
                "closes the channels and exits with status 69.\n"
                "\n"
                "Options:\n"
                "      --channels N   channels to spread the load over (default 1)\n"
                "      --writers N    writer threads, each doing blocking appends to\n"
                "                     channel (i mod N) (default 1)\n"
                "      --async N      instead: one thread keeping N appends in flight,\n"
                "                     round-robin over the channels\n"
                "      --size BYTES   payload size (default 100)\n"
                "      --seconds S    run for S seconds (default 10)\n"
                "      --count N      or: stop after N records in total\n"
                "      --readers N    tailing readers (reader j reads channel j mod N from\n"
                "                     \"end\") measuring append-to-delivery latency; needs\n"
                "                     --size >= 8 (the send time travels in the payload)\n"
                "      --json         the summary as one JSON object:\n"
                "                     {\"v\":1,\"backend\":B,\"channels\":N,\"writers\":N,\n"
                "                      \"async\":N,\"readers\":N,\"size\":N,\"records\":N,\n"
                "                      \"seconds\":S,\"appends_per_s\":X,\"mb_per_s\":X,\n"
                "                      \"append_p50_us\":X,\"append_p99_us\":X,\n"
                "                      \"append_p999_us\":X, and with --readers\n"
                "                      \"delivered\":N,\"delivery_p50_us\":X,\n"
                "                      \"delivery_p99_us\":X,\"delivery_p999_us\":X}\n"
                "      --prefix NAME  channel name prefix (default \"bench\")\n"
                "      --stats        after the summary, one more line: the library's\n"
                "                     statistics of the run's channels as one JSON\n"
                "                     object {\"v\":1,\"backend\":B,\"wals\":[...]}, one\n"
                "                     entry per channel with its append, transaction,\n"
                "                     scanner and cache counters and its append latency\n"
                "                     histogram (wal_opener_stats_json() in wal/wal-api.h)\n"
                "\n"
                "Append latency runs from the append call to durability; delivery latency\n"
                "from the append call to the reader's receipt.\n"
                "\n"
                "Examples:\n"
                "  walctl -X local.dir=/tmp/wal bench --writers 16 --seconds 5\n"
                "  walctl bench --channels 3 --writers 4 --readers 1 --seconds 10\n"
                "  walctl -b memory bench --async 1024 --count 1000000 --json\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
