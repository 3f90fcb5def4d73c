/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/bench-api.c: any backend through the public API (wal/wal.h),
 * as an embedding program sees it: wal_opener_new, wal_open, wal_append or
 * wal_append_wait, wal_read and wal_scanner_next.  bench-local measures the
 * backend interface alone; this program measures what the adaptor adds and
 * what a reader in the same process sees.
 *
 * Workloads (--workload):
 *   deliver  an active tailing reader: a thread spins on
 *            wal_scanner_next(s, 0) over a scanner opened at "latest"; the
 *            writer appends one record, waits (sched_yield() in a loop, so
 *            the adaptor's own threads can run on 2 CPUs) until the reader
 *            has it, and appends the next: the channel is never idle and
 *            never queues.  Latency: from just before wal_append() to the
 *            reader's return from next().  Writer and reader are pinned to
 *            CPU 0 and 1 as in REF-SPIN; compare its one-way time.
 *   parked   the same, but the reader blocks in wal_scanner_next(s, 1000)
 *            and the writer sleeps --pace-us before each append, so every
 *            record wakes a parked reader.  Compare REF-FUTEX (memory) or
 *            REF-REDIS (redis).
 *   append   one thread keeps up to --inflight asynchronous appends in
 *            flight for --seconds (when the window is full it sleeps until
 *            half of it has completed, so completions do not each wake it);
 *            records/s counts completions until the last one.
 *            --layer spi runs the same loop on the backend interface
 *            (registry -> build -> open -> append) with no adaptor, so the
 *            two layers differ only in the calls they make.  It hands each
 *            record over with walimpls_append_take() (wal.append_take where
 *            the backend has it, as the adaptor does with its own copy of
 *            the caller's message; else wal.append).  --take 1 makes the
 *            API row hand its records over too, with wal_append_take()
 *            (no copy: the same hand-over as the SPI row); --take 0, the
 *            default, appends with the copying wal_append().
 *   sync     one writer, wal_append_wait() in a loop for --seconds: the
 *            append -> durable latency of the backend behind the API.
 *
 * Each record is --record-bytes (default 100) whose first 16 bytes are the
 * CLOCK_MONOTONIC time of the append call and the record's index.  Each run
 * prints one JSON line (bench-report.h); append also prints the appending
 * thread's and the process's CPU time per record on stderr.
 *
 * Usage: bench-api --backend NAME --workload W [-X key=value ...]
 *                  [--count N] [--seconds S] [--inflight N] [--pace-us N]
 *                  [--layer api|spi] [--record-bytes 100] [--channel NAME]
 *                  [--pin 1]   (0: leave the deliver/parked threads unpinned)
 *                  [--callback 1] (deliver/parked, 0: wal_append() without a
 *                              callback; informational: what a writer that
 *                              needs no acknowledgement sees, the wal's
 *                              completion thread never woken)
 *                  [--take 1]  (append: wal_append_take() instead of wal_append())
 *                  [--stages 1] (deliver, information: per record, when the
 *                              writer's wal_append() returned and whether
 *                              the writer or the reader was switched out
 *                              (getrusage RUSAGE_THREAD, read outside the
 *                              timed span); prints the slowest 1 % against
 *                              the median band on stderr.  The extra
 *                              getrusage() calls slow both loops, so the
 *                              JSON line of such a run is not a page figure)
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <wal/wal.h>
#include <walimpls/walimpls.h>

#include "bench-report.h"

#define WARMUP 200

struct bench {
        const char *backend;
        size_t rec;
        /* public API */
        wal_opener *opener;
        wal *w;
        /* backend interface (--layer spi) */
        struct walimpls_opener *impl_opener;
        struct walimpls_wal *impl;
        /* The append window: the submitter sleeps when it is full and is
         * woken once half of it has completed, not at every completion (a
         * futex wake per record would be the harness's cost, not the
         * library's).  The completer's counters and the submitter's are on
         * lines of their own, and the submitter reloads @done only when its
         * last reading says the window is full: with the completions on
         * another thread (the API's dispatcher), a line written by both at
         * every record would cost each record a transfer between CPUs that
         * the single-threaded SPI loop never pays, a harness cost again. */
        alignas(64) atomic_long done, failed;      /* written by completions */
        alignas(64) atomic_long submitted;         /* written by the submitter */
        long done_seen;                            /* its last reading of done */
        long window_waits;          /* times the submitter slept on a full window */
        alignas(64) atomic_bool waiting;
        long low;                   /* wake the submitter at this many in flight */
        bool no_callback;           /* --callback 0 (deliver/parked only) */
        bool take;                  /* --take 1 (append only): wal_append_take() */
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
};

static void check(int r, wal_error *err, const char *what)
{
        if (r >= 0)
                return;
        fprintf(stderr, "bench-api: %s: %s (%s)\n", what, wal_strerror(r),
                err ? wal_error_message(err) : "no detail");
        exit(1);
}

static void fill_config(wal_config *cfg, int argc, char **argv)
{
        wal_error *err = NULL;
        for (int i = 1; i + 1 < argc; i++)
                if (strcmp(argv[i], "-X") == 0)
                        check(wal_config_set_pair(cfg, argv[i + 1], &err), err, argv[i + 1]);
}

static void open_api(struct bench *b, int argc, char **argv, const char *channel)
{
        wal_config *cfg = NULL;
        wal_error *err = NULL;
        check(wal_config_new(&cfg), NULL, "config");
        fill_config(cfg, argc, argv);
        check(wal_opener_new(b->backend, cfg, &b->opener, &err), err, "opener");
        wal_config_free(cfg);
        check(wal_open(b->opener, channel, 1, WAL_ACCESS_RW, &b->w, &err), err, "open");
}

static void open_spi(struct bench *b, int argc, char **argv, const char *channel)
{
        const struct walimpls_builder *builder;
        wal_config *cfg = NULL;
        wal_error *err = NULL;
        check(wal_registry_find(b->backend, &builder, &err), err, "registry");
        check(wal_config_new(&cfg), NULL, "config");
        fill_config(cfg, argc, argv);
        check(builder->build(cfg, &b->impl_opener, &err), err, "build");
        wal_config_free(cfg);
        struct walimpls_open_opts o = { .channel = channel, .term = 1,
                                        .access = WAL_ACCESS_RW };
        check(b->impl_opener->ops->open(b->impl_opener, &o, &b->impl, &err), err, "open");
}

static void close_all(struct bench *b)
{
        if (b->w) {
                wal_close(b->w);
                wal_opener_close(b->opener);
        }
        if (b->impl) {
                b->impl->ops->close(b->impl);
                b->impl_opener->ops->close(b->impl_opener);
        }
}

/* ---- Completions: both layers count the same way ---- */

static void completed(struct bench *b, int status)
{
        if (status < 0)
                atomic_fetch_add(&b->failed, 1);
        long done = atomic_fetch_add(&b->done, 1) + 1;
        if (atomic_load(&b->waiting) && atomic_load(&b->submitted) - done <= b->low) {
                pthread_mutex_lock(&b->wlock);
                pthread_cond_signal(&b->wcond);
                pthread_mutex_unlock(&b->wlock);
        }
}

/* Wait until fewer than @inflight appends are in flight; when the window is
 * full, until at most b->low are. */
static void window_wait(struct bench *b, long inflight)
{
        long sub = atomic_load_explicit(&b->submitted, memory_order_relaxed);
        if (sub - b->done_seen < inflight)
                return;
        b->done_seen = atomic_load(&b->done);
        if (sub - b->done_seen < inflight)
                return;
        b->window_waits++;
        pthread_mutex_lock(&b->wlock);
        atomic_store(&b->waiting, true);
        while (atomic_load(&b->submitted) - atomic_load(&b->done) > b->low)
                pthread_cond_wait(&b->wcond, &b->wlock);
        atomic_store(&b->waiting, false);
        pthread_mutex_unlock(&b->wlock);
}

static void api_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        (void)msg;
        (void)err;
        completed(arg, status);
}

static void spi_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)id;
        (void)err;
        completed(arg, status);
}

/* Build a record stamped with the time and @index, and append it. */
static uint64_t submit(struct bench *b, char *payload, uint64_t index)
{
        uint64_t t = bench_now_ns();
        memcpy(payload, &t, sizeof(t));
        memcpy(payload + 8, &index, sizeof(index));
        wal_msg *m = NULL;
        wal_error *err = NULL;
        check(wal_msg_new(WAL_MSG_DATA, payload, b->rec, &m), NULL, "wal_msg_new");
        int r;
        if (!b->w) {
                r = walimpls_append_take(b->impl, m, spi_done, b);
                wal_msg_unref(m);
        } else if (b->take) {
                /* Handed over: the reference is the library's on success. */
                r = wal_append_take(b->w, m, api_done, b, &err);
                if (r < 0)
                        wal_msg_unref(m);
        } else {
                r = wal_append(b->w, m, b->no_callback ? NULL : api_done, b, &err);
                wal_msg_unref(m);
        }
        check(r, err, "append");
        return t;
}

static void wait_completions(struct bench *b, long n)
{
        while (atomic_load(&b->done) < n) {
                struct timespec ts = { 0, 50000 };
                nanosleep(&ts, NULL);
        }
        if (atomic_load(&b->failed))
                check(-EIO, NULL, "append completions failed");
}

/* The calling thread's context switches: voluntary (it slept) and
 * involuntary (preempted). */
static void thread_switches(long *vol, long *invol)
{
        struct rusage ru;
        getrusage(RUSAGE_THREAD, &ru);
        *vol = ru.ru_nvcsw;
        *invol = ru.ru_nivcsw;
}

static uint64_t cpu_ns(clockid_t clock)
{
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Every thread of this process, its name and its CPU time so far (ns, from
 * /proc/self/task/TID/schedstat, whose first field is the time run): the
 * deliver and parked workloads print what each thread (writer, reader, the
 * wal's dispatcher) spent per record, beside the wall-time latency. */
#define TASKS_MAX 16
struct tasks {
        int n;
        long tid[TASKS_MAX];
        char name[TASKS_MAX][20];
        uint64_t ns[TASKS_MAX];
        long sleeps[TASKS_MAX];     /* voluntary context switches */
};

static void tasks_read(struct tasks *t)
{
        t->n = 0;
        DIR *d = opendir("/proc/self/task");
        if (!d)
                return;
        struct dirent *e;
        while ((e = readdir(d)) && t->n < TASKS_MAX) {
                if (e->d_name[0] == '.')
                        continue;
                char path[300];
                unsigned long long run = 0;
                snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                int ok = fscanf(f, "%llu", &run) == 1;
                fclose(f);
                if (!ok)
                        continue;
                int i = t->n++;
                t->tid[i] = atol(e->d_name);
                t->ns[i] = run;
                t->sleeps[i] = 0;
                snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
                f = fopen(path, "r");
                if (f) {
                        char ln[128];
                        while (fgets(ln, sizeof(ln), f))
                                if (sscanf(ln, "voluntary_ctxt_switches: %ld", &t->sleeps[i]) == 1)
                                        break;
                        fclose(f);
                }
                t->name[i][0] = '\0';
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                f = fopen(path, "r");
                if (f) {
                        if (fgets(t->name[i], sizeof(t->name[i]), f))
                                t->name[i][strcspn(t->name[i], "\n")] = '\0';
                        fclose(f);
                }
        }
        closedir(d);
}

/* On stderr: each thread's CPU between @a and @b per record, and in
 * brackets how many times it slept (voluntary context switches) over the
 * run (threads matched by id; the writer is the main thread). */
static void tasks_print(const char *what, const struct tasks *a, const struct tasks *b,
                        long records, long reader_tid)
{
        fprintf(stderr, "bench-api: %s: CPU ns/record [sleeps] by thread:", what);
        for (int i = 0; i < b->n; i++) {
                uint64_t before = 0;
                long slept = 0;
                for (int j = 0; j < a->n; j++)
                        if (a->tid[j] == b->tid[i]) {
                                before = a->ns[j];
                                slept = a->sleeps[j];
                        }
                const char *name = b->tid[i] == (long)getpid() ? "writer" :
                                   b->tid[i] == reader_tid ? "reader" : b->name[i];
                fprintf(stderr, " %s %.0f [%ld]", name, (double)(b->ns[i] - before) / (double)records,
                        b->sleeps[i] - slept);
        }
        fputc('\n', stderr);
}

/* ---- append: a window of asynchronous appends ---- */

static void run_append(struct bench *b, double seconds, long inflight, const char *layer)
{
        char *payload = calloc(1, b->rec);
        if (!payload)
                bench_die("calloc", ENOMEM);
        b->low = inflight / 2;
        long vol0, invol0, vol1, invol1;
        thread_switches(&vol0, &invol0);
        uint64_t cpu0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t pcpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
        uint64_t start = bench_now_ns();
        uint64_t end = start + (uint64_t)(seconds * 1e9);
        long n = 0;
        while ((n & 255) || bench_now_ns() < end) {
                window_wait(b, inflight);
                atomic_fetch_add(&b->submitted, 1);
                submit(b, payload, (uint64_t)n);
                n++;
        }
        uint64_t cpu1 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        thread_switches(&vol1, &invol1);
        wait_completions(b, n);
        uint64_t stop = bench_now_ns();
        uint64_t pcpu1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
        /* On stderr, beside the JSON line: CPU time is less sensitive to
         * the machine's load than wall time. */
        fprintf(stderr, "bench-api: append-%s: appending thread %.0f ns CPU/record, "
                        "process %.0f ns CPU/record; appending thread slept %ld times "
                        "(%ld on a full window), preempted %ld times\n", layer,
                (double)(cpu1 - cpu0) / (double)n, (double)(pcpu1 - pcpu0) / (double)n,
                vol1 - vol0, b->window_waits, invol1 - invol0);
        char wl[32];
        snprintf(wl, sizeof(wl), "append-%s", layer);
        struct bench_result res = {
                .program = "bench-api", .workload = wl, .records = (uint64_t)n,
                .bytes = (uint64_t)n * b->rec, .seconds = (double)(stop - start) / 1e9,
                .writers = 1, .record_bytes = b->rec,
        };
        bench_report(&res);
        free(payload);
}

/* ---- sync: append -> durable, one at a time ---- */

static void run_sync(struct bench *b, double seconds)
{
        char *payload = calloc(1, b->rec);
        if (!payload)
                bench_die("calloc", ENOMEM);
        struct bench_lat lat = { 0 };
        uint64_t start = bench_now_ns();
        uint64_t end = start + (uint64_t)(seconds * 1e9);
        uint64_t n = 0, now = start;
        while (now < end) {
                wal_msg *m = NULL;
                wal_error *err = NULL;
                check(wal_msg_new(WAL_MSG_DATA, payload, b->rec, &m), NULL, "wal_msg_new");
                check(wal_append_wait(b->w, m, NULL, &err), err, "append");
                wal_msg_unref(m);
                uint64_t t = bench_now_ns();
                bench_lat_add(&lat, t - now);
                now = t;
                n++;
        }
        struct bench_result res = {
                .program = "bench-api", .workload = "sync", .records = n,
                .bytes = n * b->rec, .seconds = (double)(now - start) / 1e9,
                .writers = 1, .record_bytes = b->rec, .lat = &lat,
        };
        bench_report(&res);
        free(lat.v);
        free(payload);
}

/* ---- deliver / parked: append -> in-process reader ---- */

struct reader {
        wal_scanner *s;
        bool parked;
        long total;
        _Atomic long seen;          /* records received so far */
        _Atomic long tid;           /* the reader thread's id */
        _Atomic bool counted;       /* the writer read the threads' CPU */
        struct bench_lat lat;
        struct stage *st;           /* --stages 1: one per record, else NULL */
};

/* --stages 1: what happened to one record. */
struct stage {
        uint64_t sent;              /* the writer's stamp (in the payload) */
        uint64_t returned;          /* the writer, after wal_append() returned */
        uint64_t seen;              /* the reader, after next() returned it */
        long w_switches;            /* the writer's context switches in the call */
        long r_switches;            /* the reader's since the record before */
};

static long thread_switch_count(void)
{
        long vol, invol;
        thread_switches(&vol, &invol);
        return vol + invol;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static uint64_t median_u64(uint64_t *v, size_t n)
{
        if (!n)
                return 0;
        qsort(v, n, sizeof(*v), cmp_u64);
        return v[n / 2];
}

/* One band of records (latency rank [lo, hi) of the sorted order): how
 * many had a switch, and, of those with none, the medians of the call's
 * length and of the latency, and how many reached the reader before the
 * call returned. */
static void stages_band(const char *what, const struct stage *st, const size_t *order,
                        size_t lo, size_t hi)
{
        size_t n = hi - lo, w_sw = 0, r_sw = 0, clean = 0, before = 0;
        uint64_t *call = calloc(n ? n : 1, sizeof(*call));
        uint64_t *lat = calloc(n ? n : 1, sizeof(*lat));
        if (!call || !lat)
                bench_die("calloc", ENOMEM);
        for (size_t k = lo; k < hi; k++) {
                const struct stage *x = &st[order[k]];
                if (x->w_switches)
                        w_sw++;
                if (x->r_switches)
                        r_sw++;
                if (x->w_switches || x->r_switches)
                        continue;
                call[clean] = x->returned - x->sent;
                lat[clean] = x->seen - x->sent;
                if (x->seen < x->returned)
                        before++;
                clean++;
        }
        fprintf(stderr, "bench-api: stages: %s: %zu records, writer switched in %zu, reader in %zu; "
                        "of the %zu with neither: latency median %" PRIu64 " ns, wal_append() call "
                        "median %" PRIu64 " ns, %zu seen before the call returned\n",
                what, n, w_sw, r_sw, clean, median_u64(lat, clean), median_u64(call, clean), before);
        free(call);
        free(lat);
}

static const struct stage *stages_sort_base;

static int cmp_stage_latency(const void *a, const void *b)
{
        const struct stage *x = &stages_sort_base[*(const size_t *)a];
        const struct stage *y = &stages_sort_base[*(const size_t *)b];
        uint64_t lx = x->seen - x->sent, ly = y->seen - y->sent;
        return lx < ly ? -1 : lx > ly;
}

static void stages_print(const struct stage *st, long total)
{
        size_t n = total > WARMUP ? (size_t)(total - WARMUP) : 0;
        size_t *order = calloc(n ? n : 1, sizeof(*order));
        if (!order)
                bench_die("calloc", ENOMEM);
        for (size_t k = 0; k < n; k++)
                order[k] = WARMUP + k;
        stages_sort_base = st;
        qsort(order, n, sizeof(*order), cmp_stage_latency);
        stages_band("all", st, order, 0, n);
        stages_band("median band 45-55 %", st, order, n * 45 / 100, n * 55 / 100);
        stages_band("slowest 1 %", st, order, n - n / 100, n);
        free(order);
}

/* The same pinning as REF-SPIN and REF-FUTEX: writer on CPU 0, reader on
 * CPU 1 (the adaptor's own threads are left to the scheduler). */
static bool pinning = true;

static void *reader_main(void *arg)
{
        struct reader *rd = arg;
        if (pinning)
                bench_pin(1);
        atomic_store(&rd->tid, (long)gettid());
        int timeout = rd->parked ? 1000 : 0;
        int idle_ms = 0;
        long sw_before = rd->st ? thread_switch_count() : 0;
        while (atomic_load_explicit(&rd->seen, memory_order_relaxed) < rd->total) {
                wal_msg *m = NULL;
                wal_error *err = NULL;
                int r = wal_scanner_next(rd->s, timeout, &m, &err);
                uint64_t t = bench_now_ns();
                if (r == -ETIMEDOUT) {
                        if (rd->parked && ++idle_ms > 10)
                                check(r, err, "reader: nothing for 10 s");
                        continue;
                }
                check(r, err, "wal_scanner_next");
                idle_ms = 0;
                size_t len;
                const char *p = wal_msg_payload(m, &len);
                uint64_t sent, index;
                memcpy(&sent, p, sizeof(sent));
                memcpy(&index, p + 8, sizeof(index));
                if (index >= WARMUP)
                        bench_lat_add(&rd->lat, t - sent);
                if (rd->st && index < (uint64_t)rd->total) {
                        long sw = thread_switch_count();
                        rd->st[index].seen = t;
                        rd->st[index].r_switches = sw - sw_before;
                        sw_before = sw;
                }
                wal_msg_unref(m);
                atomic_store_explicit(&rd->seen, (long)index + 1, memory_order_release);
        }
        /* Outside the timed interval: stay until the writer has read this
         * thread's CPU time. */
        while (!atomic_load(&rd->counted))
                sched_yield();
        return NULL;
}

static void run_deliver(struct bench *b, bool parked, long count, long pace_us, bool stages)
{
        struct wal_deliver from = { .policy = WAL_DELIVER_LATEST };
        struct wal_filter data = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };
        struct reader rd = { .parked = parked, .total = count + WARMUP };
        if (stages) {
                /* Touched now, so the run takes no page fault on them. */
                rd.st = calloc((size_t)rd.total, sizeof(*rd.st));
                if (!rd.st)
                        bench_die("calloc", ENOMEM);
                memset(rd.st, 0, (size_t)rd.total * sizeof(*rd.st));
        }
        wal_error *err = NULL;
        check(wal_read(b->w, &from, &data, &rd.s, &err), err, "wal_read");
        char *payload = calloc(1, b->rec);
        if (!payload)
                bench_die("calloc", ENOMEM);
        pthread_t th;
        if (pthread_create(&th, NULL, reader_main, &rd) != 0)
                bench_die("pthread_create", errno);
        if (pinning)
                bench_pin(0);
        struct timespec pace = { pace_us / 1000000, (pace_us % 1000000) * 1000 };
        struct timespec nap = { 0, 20000 };
        uint64_t start = 0;
        struct tasks t0 = { 0 }, t1 = { 0 };
        for (long i = 0; i < rd.total; i++) {
                if (i == WARMUP) {
                        tasks_read(&t0);
                        start = bench_now_ns();
                }
                if (parked)
                        nanosleep(&pace, NULL);
                long sw = rd.st ? thread_switch_count() : 0;
                uint64_t sent = submit(b, payload, (uint64_t)i);
                if (rd.st) {
                        rd.st[i].returned = bench_now_ns();
                        rd.st[i].sent = sent;
                        rd.st[i].w_switches = thread_switch_count() - sw;
                }
                while (atomic_load_explicit(&rd.seen, memory_order_acquire) <= i) {
                        if (parked)
                                nanosleep(&nap, NULL);
                        else
                                sched_yield();
                }
        }
        uint64_t stop = bench_now_ns();
        tasks_read(&t1);
        atomic_store(&rd.counted, true);
        pthread_join(th, NULL);
        tasks_print(parked ? "parked" : "deliver", &t0, &t1, count, atomic_load(&rd.tid));
        if (rd.st) {
                stages_print(rd.st, rd.total);
                free(rd.st);
        }
        /* Without callbacks, the reader's receipt is the completion. */
        if (!b->no_callback)
                wait_completions(b, rd.total);
        wal_scanner_close(rd.s);
        struct bench_result res = {
                .program = "bench-api", .workload = parked ? "parked" : "deliver",
                .records = (uint64_t)count, .bytes = (uint64_t)count * b->rec,
                .seconds = (double)(stop - start) / 1e9, .writers = 1,
                .record_bytes = b->rec, .lat = &rd.lat,
        };
        bench_report(&res);
        free(rd.lat.v);
        free(payload);
}

int main(int argc, char **argv)
{
        struct bench b = { .wlock = PTHREAD_MUTEX_INITIALIZER,
                           .wcond = PTHREAD_COND_INITIALIZER };
        b.backend = bench_arg(argc, argv, "backend", "memory");
        b.rec = bench_arg_size(argc, argv, "record-bytes", "100");
        const char *wl = bench_arg(argc, argv, "workload", "deliver");
        const char *layer = bench_arg(argc, argv, "layer", "api");
        const char *channel = bench_arg(argc, argv, "channel", "bench");
        double seconds = bench_arg_double(argc, argv, "seconds", "2");
        long count = atol(bench_arg(argc, argv, "count", "20000"));
        long inflight = atol(bench_arg(argc, argv, "inflight", "4096"));
        long pace_us = atol(bench_arg(argc, argv, "pace-us", "100"));
        pinning = atoi(bench_arg(argc, argv, "pin", "1")) != 0;
        b.no_callback = atoi(bench_arg(argc, argv, "callback", "1")) == 0;
        b.take = atoi(bench_arg(argc, argv, "take", "0")) != 0;
        if (b.rec < 16 || count < 1 || inflight < 1 || pace_us < 0) {
                fprintf(stderr, "bench-api: --record-bytes >= 16, --count >= 1, "
                                "--inflight >= 1, --pace-us >= 0\n");
                return 2;
        }
        bool spi = strcmp(layer, "spi") == 0;
        if (b.no_callback && strcmp(wl, "deliver") != 0 && strcmp(wl, "parked") != 0) {
                fprintf(stderr, "bench-api: --callback 0 only with --workload deliver or parked\n");
                return 2;
        }
        if (b.take && (spi || strcmp(wl, "append") != 0)) {
                fprintf(stderr, "bench-api: --take 1 only with --workload append --layer api\n");
                return 2;
        }
        if (spi && strcmp(wl, "append") != 0) {
                fprintf(stderr, "bench-api: --layer spi only with --workload append\n");
                return 2;
        }
        if (spi)
                open_spi(&b, argc, argv, channel);
        else
                open_api(&b, argc, argv, channel);

        if (strcmp(wl, "append") == 0)
                run_append(&b, seconds, inflight, spi ? "spi" : "api");
        else if (strcmp(wl, "sync") == 0)
                run_sync(&b, seconds);
        else if (strcmp(wl, "deliver") == 0 || strcmp(wl, "parked") == 0)
                run_deliver(&b, strcmp(wl, "parked") == 0, count, pace_us,
                            atoi(bench_arg(argc, argv, "stages", "0")) != 0);
        else {
                fprintf(stderr, "bench-api: unknown workload %s\n", wl);
                return 2;
        }
        close_all(&b);
        return 0;
}
