/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/bench-local.c: the local backend under the reference
 * programs' workloads, driven through the backend interface
 * (walimpls/walimpls.h) as the adaptor drives it: registry lookup,
 * builder.build with local.dir, opener.open, wal.append with a completion
 * callback, wal.read and scanner.next; and wal.flush after each blocking
 * append, as the adaptor's wal_append_wait() does.
 *
 * Workloads (--workload):
 *   writers   --writers N threads, each: build a message, append, wait for
 *             its completion (blocking API), repeat.  The wait is
 *             wal.flush (walimpls_flush: the backend may write the record
 *             on the appending thread) and then the completion, or only the
 *             completion with --flush 0 or when the backend has no flush.  N = 1 is "sync1"
 *             (compare REF-SYNC), 16/64 compare REF-GC; with --record-bytes
 *             1m it is "bulk1m" (compare fio bs=1m fdatasync=1).
 *   async     one thread keeps --inflight appends in flight; a completion
 *             frees a slot.  Latency is submit -> completion.
 *   prepare   fill a channel with --total-bytes of --record-bytes records
 *             (untimed; for replay).  Each record carries what the adaptor
 *             stamps on every message appended through the public API (a
 *             hybrid-clock time tick, the term, the last-confirmed ID), so
 *             the replay reads the envelopes a real channel holds (20 bytes
 *             for a data message, against 4 with the type alone).
 *   replay    open the prepared channel read-only, time the open (recovery
 *             scan) and one full read of every message; the backend checks
 *             every frame's CRC-32C and envelope as it reads.  The
 *             replay line's stored_bytes is the channel's size as the
 *             backend's info reports it (the local backend: the bytes of
 *             its frames), for REF-SCAN to read a file of that size.  With
 *             --read-api batch (the default, when the backend has it) the
 *             records come through scanner.next_batch as views into the
 *             scanner's buffer, as an embedder replaying at startup would
 *             read them; --read-api msg reads one wal_msg per next().
 *             Compare REF-SCAN.
 *
 * A completion means durable: the backend acknowledges only after the
 * fdatasync (or RWF_DSYNC write) covering the record completed.  Each run
 * prints one JSON line (bench-common.h); replay prints a second one for the
 * recovery-open time.
 *
 * Usage: bench-local --dir DIR --workload W [--writers N] [--seconds 3]
 *                    [--record-bytes 100] [--inflight 4096]
 *                    [--total-bytes 1g] [--channel bench]
 *                    [--read-api batch|msg]
 *                    [--flush 1|0]        (writers: call wal.flush after append)
 *                    [-X key=value ...]   (extra backend properties)
 *                    [--backend local]    (another registered backend, to
 *                                          check the driver itself)
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <wal/wal-registry.h>
#include <walimpls/walimpls.h>

#include "bench-common.h"
#include "wal-build-config.h"
#if HAVE_LOCAL
#include "impls/local/local.h"
#endif

struct bench {
        struct walimpls_opener *opener;
        struct walimpls_wal *wal;
        size_t rec;
        uint64_t end_ns;
        bool flush;             /* blocking writers call walimpls_flush */
        bool stamp;             /* async: stamp messages as the adaptor does */
        _Atomic int failed;     /* first failed completion status */
};

static void check(int r, wal_error *err, const char *what)
{
        if (r >= 0)
                return;
        fprintf(stderr, "bench-local: %s: %s (%s)\n", what, wal_strerror(r),
                err ? wal_error_message(err) : "no detail");
        exit(1);
}

static void open_backend(struct bench *b, int argc, char **argv, const char *dir,
                         const char *channel, enum wal_access access)
{
        const struct walimpls_builder *builder;
        wal_error *err = NULL;
        wal_config *cfg;
        const char *backend = bench_arg(argc, argv, "backend", "local");
        check(wal_registry_find(backend, &builder, &err), err, "registry");
        check(wal_config_new(&cfg), NULL, "config");
        if (strcmp(backend, "local") == 0)
                check(wal_config_set(cfg, "local.dir", dir, &err), err, "local.dir");
        for (int i = 1; i + 1 < argc; i++)
                if (strcmp(argv[i], "-X") == 0)
                        check(wal_config_set_pair(cfg, argv[i + 1], &err), err, argv[i + 1]);
        check(builder->build(cfg, &b->opener, &err), err, "build");
        wal_config_free(cfg);
        struct walimpls_open_opts o = { .channel = channel, .term = 1, .access = access };
        check(b->opener->ops->open(b->opener, &o, &b->wal, &err), err, "open");
}

static void close_backend(struct bench *b)
{
        b->wal->ops->close(b->wal);
        b->opener->ops->close(b->opener);
}

static wal_msg *make_msg(size_t len, const char *payload)
{
        wal_msg *m;
        check(wal_msg_new(WAL_MSG_DATA, payload, len, &m), NULL, "wal_msg_new");
        return m;
}

/* ---- Blocking writers ---- */

struct writer {
        struct bench *b;
        pthread_t tid;
        sem_t done;
        uint64_t n;
        struct bench_lat lat;
        char *payload;
};

static void writer_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct writer *w = arg;
        (void)id;
        (void)err;
        if (status < 0) {
                int zero = 0;
                atomic_compare_exchange_strong(&w->b->failed, &zero, status);
        }
        sem_post(&w->done);
}

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        struct bench *b = w->b;
        for (;;) {
                uint64_t t0 = bench_now_ns();
                if (t0 >= b->end_ns || atomic_load(&b->failed))
                        break;
                memcpy(w->payload, &w->n, b->rec < 8 ? b->rec : 8);
                wal_msg *m = make_msg(b->rec, w->payload);
                int r = b->wal->ops->append(b->wal, m, writer_done, w);
                wal_msg_unref(m);
                check(r, NULL, "append");
                if (b->flush) {
                        wal_error *err = NULL;
                        r = walimpls_flush(b->wal, -1, &err);
                        if (r != -EOPNOTSUPP)
                                check(r, err, "flush");
                }
                while (sem_wait(&w->done) < 0 && errno == EINTR)
                        ;
                bench_lat_add(&w->lat, bench_now_ns() - t0);
                w->n++;
        }
        return NULL;
}

static void run_writers(struct bench *b, int nw, double seconds, const char *wl)
{
        struct writer *ws = calloc((size_t)nw, sizeof(*ws));
        if (!ws)
                bench_die("calloc", ENOMEM);
        uint64_t start = bench_now_ns();
        b->end_ns = start + (uint64_t)(seconds * 1e9);
        for (int i = 0; i < nw; i++) {
                ws[i].b = b;
                sem_init(&ws[i].done, 0, 0);
                ws[i].payload = malloc(b->rec);
                if (!ws[i].payload)
                        bench_die("malloc", ENOMEM);
                memset(ws[i].payload, 'w', b->rec);
                pthread_create(&ws[i].tid, NULL, writer_main, &ws[i]);
        }
        struct bench_lat lat = { 0 };
        uint64_t n = 0;
        for (int i = 0; i < nw; i++) {
                pthread_join(ws[i].tid, NULL);
                n += ws[i].n;
                bench_lat_merge(&lat, &ws[i].lat);
                sem_destroy(&ws[i].done);
                free(ws[i].payload);
        }
        uint64_t stop = bench_now_ns();
        if (atomic_load(&b->failed))
                check(atomic_load(&b->failed), NULL, "append completion");
        struct bench_result res = {
                .program = "bench-local", .workload = wl, .records = n,
                .bytes = n * b->rec, .seconds = (double)(stop - start) / 1e9,
                .writers = nw, .record_bytes = b->rec, .lat = &lat,
        };
        bench_print(&res);
        free(lat.v);
        free(ws);
}

/* ---- One thread, many appends in flight ---- */

/*
 * Completions may run in any order, so a completion cannot hand its slot to
 * the next submission by position.  Instead the callback's argument is the
 * record's sequence number and stamps[seq] holds its submit time, replaced
 * by its latency on completion.  The array is calloc()ed for --max-records
 * and only the pages a run touches are ever backed by memory.
 *
 * The window is an atomic count of appends in flight.  When it is full the
 * submitter sleeps until it has drained to half (or to zero at the end), and
 * only then does a completion wake it: one wake-up per half window, not one
 * per completion, so the driver costs the backend's completion thread next
 * to nothing.  The sleeper publishes `waiting` before re-reading the count
 * and a completion decrements before reading `waiting` (both sequentially
 * consistent), so at least one of them sees the other: no lost wake-up.
 */
struct async {
        struct bench *b;
        uint64_t *stamps;
        _Atomic uint64_t inflight;
        _Atomic bool waiting;
        _Atomic uint64_t wake_at;    /* wake the submitter at or below this */
        pthread_mutex_t lock;
        pthread_cond_t cv;
};
static struct async g_async = { .lock = PTHREAD_MUTEX_INITIALIZER,
                                .cv = PTHREAD_COND_INITIALIZER };

static void async_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        uint64_t seq = (uint64_t)(uintptr_t)arg;
        (void)id;
        (void)err;
        if (status < 0) {
                int zero = 0;
                atomic_compare_exchange_strong(&g_async.b->failed, &zero, status);
        }
        g_async.stamps[seq] = bench_now_ns() - g_async.stamps[seq];
        uint64_t n = atomic_fetch_sub(&g_async.inflight, 1) - 1;
        if (n <= atomic_load(&g_async.wake_at) && atomic_load(&g_async.waiting)) {
                pthread_mutex_lock(&g_async.lock);
                pthread_cond_signal(&g_async.cv);
                pthread_mutex_unlock(&g_async.lock);
        }
}

/* Sleep until at most @level appends are in flight. */
static void async_wait_below(struct async *a, uint64_t level)
{
        if (atomic_load(&a->inflight) <= level)
                return;
        pthread_mutex_lock(&a->lock);
        atomic_store(&a->wake_at, level);
        atomic_store(&a->waiting, true);
        while (atomic_load(&a->inflight) > level)
                pthread_cond_wait(&a->cv, &a->lock);
        atomic_store(&a->waiting, false);
        pthread_mutex_unlock(&a->lock);
}

static void run_async(struct bench *b, unsigned inflight, double seconds, uint64_t max)
{
        struct async *a = &g_async;
        a->b = b;
        a->stamps = calloc(max, sizeof(*a->stamps));
        char *payload = malloc(b->rec);
        if (!a->stamps || !payload)
                bench_die("calloc", ENOMEM);
        memset(payload, 'a', b->rec);
        atomic_store(&a->inflight, 0);

        uint64_t start = bench_now_ns();
        uint64_t end = start + (uint64_t)(seconds * 1e9);
        uint64_t seq = 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        uint64_t tick_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
        while (seq < max && !atomic_load(&b->failed)) {
                if (atomic_load(&a->inflight) >= inflight)
                        async_wait_below(a, inflight / 2);
                uint64_t t0 = bench_now_ns();
                if (t0 >= end)
                        break;
                a->stamps[seq] = t0;
                memcpy(payload, &seq, b->rec < 8 ? b->rec : 8);
                wal_msg *m = make_msg(b->rec, payload);
                if (b->stamp) {
                        /* As adaptor/interceptors.c's time tick does: the
                         * tick's high bits are realtime milliseconds, shifted
                         * by 18 for a logical counter; the last confirmed ID
                         * trails the record's. */
                        check(wal_msg_set_time_tick(m, (tick_ms << 18) + seq), NULL, "tick");
                        check(wal_msg_set_term(m, 1), NULL, "term");
                        check(wal_msg_set_last_confirmed(m, WAL_MSGID(0, seq)), NULL,
                              "last confirmed");
                }
                atomic_fetch_add(&a->inflight, 1);
                int r = b->wal->ops->append(b->wal, m, async_done, (void *)(uintptr_t)seq);
                wal_msg_unref(m);
                check(r, NULL, "append");
                seq++;
        }
        /* Wait for every completion (they are durable acknowledgements). */
        async_wait_below(a, 0);
        uint64_t stop = bench_now_ns();
        if (atomic_load(&b->failed))
                check(atomic_load(&b->failed), NULL, "append completion");

        struct bench_lat lat = { 0 };
        for (uint64_t i = 0; i < seq; i++)
                bench_lat_add(&lat, a->stamps[i]);
        char wl[48];
        snprintf(wl, sizeof(wl), "async%u", inflight);
        struct bench_result res = {
                .program = "bench-local", .workload = wl, .records = seq,
                .bytes = seq * b->rec, .seconds = (double)(stop - start) / 1e9,
                .writers = 1, .record_bytes = b->rec, .lat = &lat,
        };
        bench_print(&res);
        free(lat.v);
        free(a->stamps);
        free(payload);
}

/* ---- Replay ---- */

static void run_prepare(struct bench *b, uint64_t total, unsigned inflight)
{
        /* The async path, untimed: as many records as fit in @total bytes. */
        uint64_t n = total / b->rec;
        if (n == 0)
                n = 1;
        b->stamp = true;
        run_async(b, inflight, 1e9, n);
}

static void run_replay(int argc, char **argv, const char *dir, const char *channel)
{
        struct bench b = { 0 };
        wal_error *err = NULL;
        uint64_t t0 = bench_now_ns();
        open_backend(&b, argc, argv, dir, channel, WAL_ACCESS_RO);
        uint64_t t1 = bench_now_ns();

        struct walimpls_info info = { .bytes = -1 };
        if (b.wal->ops->info)
                check(b.wal->ops->info(b.wal, &info, &err), err, "info");
        struct walimpls_read_opts ro = { .name = "bench-replay",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *s;
        struct timespec c2, c3, p2, p3;
#if HAVE_LOCAL
        struct local_ra_handoffs h0, h1;
        local_readahead_handoffs(&h0);
#endif
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p2);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c2);
        uint64_t t2 = bench_now_ns();
        check(b.wal->ops->read(b.wal, &ro, &s, &err), err, "read");
        uint64_t n = 0, bytes = 0, sum = 0, rec = 0;
        struct wal_msgid prev = WAL_MSGID_NONE;
        /* --read-api batch (default when the backend has it): next_batch,
         * records as views into the scanner's buffer; msg: next(), one
         * message object per record. */
        const char *api = bench_arg(argc, argv, "read-api", "batch");
        bool batch = strcmp(api, "msg") != 0 && s->ops->version >= 2 && s->ops->next_batch;
        static struct wal_msg_view views[1024];
        for (;;) {
                if (batch) {
                        size_t k;
                        int r = s->ops->next_batch(s, 0, views, 1024, &k, &err);
                        if (r == -ETIMEDOUT)
                                break;
                        check(r, err, "next_batch");
                        for (size_t i = 0; i < k; i++) {
                                const struct wal_msg_view *v = &views[i];
                                const unsigned char *p = v->payload;
                                size_t len = v->payload_len;
                                if (!wal_msgid_is_none(prev) && wal_msgid_cmp(prev, v->id) >= 0) {
                                        fprintf(stderr, "bench-local: replay out of order\n");
                                        exit(1);
                                }
                                prev = v->id;
                                sum += len ? p[0] + p[len - 1] : 0; /* touch the payload */
                                bytes += len;
                                rec = len;
                                n++;
                        }
                        continue;
                }
                wal_msg *m;
                int r = s->ops->next(s, 0, &m, &err);
                if (r == -ETIMEDOUT)
                        break;
                check(r, err, "next");
                size_t len;
                const unsigned char *p = wal_msg_payload(m, &len);
                struct wal_msgid id = wal_msg_id(m);
                if (!wal_msgid_is_none(prev) && wal_msgid_cmp(prev, id) >= 0) {
                        fprintf(stderr, "bench-local: replay out of order\n");
                        exit(1);
                }
                prev = id;
                sum += len ? p[0] + p[len - 1] : 0; /* touch the payload */
                bytes += len;
                rec = len;
                n++;
                wal_msg_unref(m);
        }
        uint64_t t3 = bench_now_ns();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c3);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p3);
        double cpu = (double)(p3.tv_sec - p2.tv_sec) + (double)(p3.tv_nsec - p2.tv_nsec) / 1e9;
        s->ops->close(s);
        close_backend(&b);
#if HAVE_LOCAL
        local_readahead_handoffs(&h1);
#endif
        fprintf(stderr, "bench-local: replayed %llu messages (checksum %llu) in %.1f ms, "
                "%.1f ms of CPU (%.1f ms on the replaying thread)\n", (unsigned long long)n,
                (unsigned long long)sum, (double)(t3 - t2) / 1e6, cpu * 1e3,
                ((double)(c3.tv_sec - c2.tv_sec) * 1e9 + (double)(c3.tv_nsec - c2.tv_nsec)) / 1e6);
#if HAVE_LOCAL
        /* the local backend's read-ahead hand-offs (local.h; zero for another backend) */
        fprintf(stderr, "bench-local: read-ahead hand-offs: helper waited %llu (watch saw "
                "%llu, slept %llu), scanner waited %llu (watch saw %llu, slept %llu)\n",
                (unsigned long long)(h1.waits[0] - h0.waits[0]),
                (unsigned long long)(h1.spun[0] - h0.spun[0]),
                (unsigned long long)(h1.sleeps[0] - h0.sleeps[0]),
                (unsigned long long)(h1.waits[1] - h0.waits[1]),
                (unsigned long long)(h1.spun[1] - h0.spun[1]),
                (unsigned long long)(h1.sleeps[1] - h0.sleeps[1]));
        for (int i = 0; i < 2; i++) {
                fprintf(stderr, "bench-local: %s waited %.1f ms:", i ? "scanner" : "helper",
                        (double)(h1.wait_ns[i] - h0.wait_ns[i]) / 1e6);
                for (int j = 0; j < 8; j++)
                        fprintf(stderr, " %llu", (unsigned long long)(h1.hist[i][j] - h0.hist[i][j]));
                fprintf(stderr, "\n");
        }
#endif

        struct bench_result res = {
                .program = "bench-local", .workload = "replay", .records = n, .bytes = bytes,
                .seconds = (double)(t3 - t2) / 1e9, .writers = 1, .record_bytes = rec,
                .stored_bytes = info.bytes > 0 ? (uint64_t)info.bytes : 0,
                .cpu_seconds = cpu,
        };
        bench_print(&res);
        struct bench_result rec_res = {
                .program = "bench-local", .workload = "recovery-open", .records = n,
                .bytes = bytes, .seconds = (double)(t1 - t0) / 1e9, .writers = 1,
                .record_bytes = rec,
        };
        bench_print(&rec_res);
}

int main(int argc, char **argv)
{
        const char *dir = bench_arg(argc, argv, "dir", NULL);
        const char *wl = bench_arg(argc, argv, "workload", "writers");
        const char *channel = bench_arg(argc, argv, "channel", "bench");
        double seconds = bench_arg_double(argc, argv, "seconds", "3");
        int nw = atoi(bench_arg(argc, argv, "writers", "1"));
        unsigned inflight = (unsigned)atoi(bench_arg(argc, argv, "inflight", "4096"));
        uint64_t total = bench_arg_size(argc, argv, "total-bytes", "1g");
        uint64_t max = bench_arg_size(argc, argv, "max-records", "64m");
        struct bench b = { 0 };
        b.rec = bench_arg_size(argc, argv, "record-bytes", "100");
        b.flush = atoi(bench_arg(argc, argv, "flush", "1")) != 0;
        if (!dir || nw < 1 || inflight < 1 || b.rec < 1) {
                fprintf(stderr, "usage: bench-local --dir DIR --workload "
                                "writers|async|prepare|replay [--writers N] [--seconds S]\n"
                                "       [--record-bytes B] [--inflight N] [--total-bytes B]\n"
                                "       [--flush 1|0] [-X key=value ...]\n");
                return 2;
        }

        if (strcmp(wl, "replay") == 0) {
                run_replay(argc, argv, dir, channel);
                return 0;
        }
        open_backend(&b, argc, argv, dir, channel, WAL_ACCESS_RW);
        if (strcmp(wl, "writers") == 0) {
                char name[48];
                if (b.rec >= (1u << 20))
                        snprintf(name, sizeof(name), "bulk%zum", b.rec >> 20);
                else if (nw == 1)
                        snprintf(name, sizeof(name), "sync1");
                else
                        snprintf(name, sizeof(name), "writers%d", nw);
                run_writers(&b, nw, seconds, name);
        } else if (strcmp(wl, "async") == 0) {
                run_async(&b, inflight, seconds, max);
        } else if (strcmp(wl, "prepare") == 0) {
                run_prepare(&b, total, inflight);
        } else {
                fprintf(stderr, "bench-local: unknown workload '%s'\n", wl);
                return 2;
        }
        close_backend(&b);
        return 0;
}
