/* SPDX-License-Identifier: MIT */
/*
 * tests/kafka/bench-kafka.c: the Kafka backend's append and replay rates as
 * ratios to raw librdkafka (REF-RDK, perf-anchors §9.5), side by side on one
 * in-process mock cluster, in alternating pairs (the order flips every
 * pair), reporting the median and min-max of the per-pair ratios.  A
 * benchmark, not a test: built, never run by `meson test`.
 *
 *   bench-kafka [append|replay|latency|all] [appends per run] [pairs]
 *   (defaults: all 1000000 5; tests/kafka/bench-kafka.sh wraps it)
 *   bench-kafka ours|ours-fenced [appends per run] [runs]: only ours
 *   (fencing off, or on), one run after another, to profile (perf record)
 *   bench-kafka raw|raw-key [appends per run] [runs]: only raw (or raw+key),
 *   the same way, to profile the reference beside ours
 *   (these profiling modes also print each run's CPU time per record by
 *   thread name, from /proc/self/task/TID/schedstat, as the append pairs
 *   do, and the tail: from the last append to the last completion)
 *   Environment, for profiling: BENCH_NOFLUSH=1 ends ours' runs without
 *   wal.flush (waits for the completions only); BENCH_FQ=N sets
 *   kafkawal.fence_queue.
 *
 * Append.  Identical client configuration on every side: the backend's
 * producer defaults (enable.idempotence=true, acks=all, linger.ms=5,
 * socket.nagle.disable=true) plus REF-RDK's queue.buffering.max.messages=
 * 1000000 and batch.num.messages=10000.  "raw" is REF-RDK: producev of
 * 100-B values with RD_KAFKA_MSG_F_COPY, poll every 1024, retry on queue
 * full, flush; it is what the goal compares against.  "raw+key" is the same
 * loop also sending a record key of the bytes our records carry (made by
 * the backend's key encoder for a message with the time tick, term and
 * last-confirmed ID set as the adaptor sets them: 18 bytes of the compact
 * layout since 2026-11-22 (16 for a few hours of that day, under the
 * compact layout's first prefix), 26 of the full layout before): the same record format, so ours/raw+key is the
 * backend's own overhead.  "ours" appends 100-B data messages through the
 * walimpls interface and waits for every completion, with kafkawal.fencing
 * off and on.  Its messages (MSG_POOL distinct ones, with the time tick,
 * term and last-confirmed ID the adaptor sets) are built before the clock
 * starts, as raw's value is, and appended in turn: making a message is the
 * caller's work (the adaptor's, which also keeps each message until its
 * completion), as preparing the value is raw's caller's; until 2026-11-22
 * the loop built and released one message per append (40-50 ns, and with
 * fencing on, fresh memory held across a register round trip), work the
 * raw loop does not do.  Every run uses a fresh
 * topic; each side's producer is connected before its clock starts.  Each
 * side's clock stops when every record is acknowledged: raw's loop ends in
 * rd_kafka_flush, ours (since 2026-11-22) in wal.flush, which skips
 * linger.ms the same way (before, ours waited out linger.ms for its last
 * batch, 5 ms of a 50-100 ms run of 200 000), then waits for the
 * completions.  Also
 * printed per run: process CPU time per message (every thread, the mock
 * broker's too), steadier than wall time on a shared machine.
 *
 * Replay.  The backend writes one fresh topic per pair (REPLAY_N records,
 * below the mock's 5 MiB per-partition cap), then a raw consumer
 * (assign + consumer_poll, with exactly the scanner consumer's properties:
 * the backend's consumer defaults and the same kafka.* settings) and a
 * scanner (next() into decoded messages) each read all of it, both starting
 * at the low watermark (as the scanner's ALL does).  The clock runs from
 * creating the consumer to the last record, on both sides; the rate from
 * the first record to the last and the wait for the first are printed too.
 * A replay run takes 10-20 ms, a third of it waiting for the first fetch,
 * so each pair asked for runs REPLAY_PAIRS_PER_PAIR replay pairs (since
 * 2026-11-22; five pairs gave medians 0.2 apart on two quiet pages).
 *
 * Latency.  One append in flight at linger.ms=0: append -> completion vs
 * produce -> delivery report (one run, p50/p99).
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <walimpls/walimpls.h>
#include <wal/wal-config.h>
#include <wal/wal-log.h>
#include <wal/wal-registry.h>
#include "impls/kafka/kafka-internal.h"
#include "utility/envelope.h"

/* Records per replay: about 140 B each on the mock, under its 5 MiB cap. */
#define REPLAY_N 30000
#define MAX_PAIRS 64
/* Replay pairs per pair asked for (a replay run is short, see main). */
#define REPLAY_PAIRS_PER_PAIR 4
/* Distinct messages an append run cycles through (run_ours). */
#define MSG_POOL 1024

static const char *const common_props[][2] = {
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "linger.ms", "5" },
        { "socket.nagle.disable", "true" },
        { "queue.buffering.max.messages", "1000000" },
        { "batch.num.messages", "10000" },
};

/* The scanner's consumer: the backend's consumer defaults (kafka.c) plus
 * what this bench passes through, in the same order. */
static const char *const consumer_props[][2] = {
        { "enable.auto.commit", "false" },
        { "enable.auto.offset.store", "false" },
        { "auto.offset.reset", "error" },
        { "enable.partition.eof", "false" },
        { "socket.nagle.disable", "true" },
        { "fetch.wait.max.ms", "100" },
        { "reconnect.backoff.ms", "20" },
        { "reconnect.backoff.max.ms", "1000" },
        { "group.id", "libwal-scanner" },
        { "fetch.wait.max.ms", "10" },
};

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
               (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
        fprintf(stderr, "bench-kafka: %s\n", what);
        exit(1);
}

/* ---- CPU time per thread (the profiling modes print it) ---- */

#define MAX_THREADS 64

/* Every thread of this process: its id, name and time on a CPU (ns, from
 * /proc/self/task/TID/schedstat, finer than getrusage's ticks). */
struct threads {
        int n;
        struct {
                int tid;
                char comm[24];
                double ns;
        } t[MAX_THREADS];
};

static void threads_snap(struct threads *s)
{
        s->n = 0;
        DIR *d = opendir("/proc/self/task");
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)) && s->n < MAX_THREADS) {
                if (de->d_name[0] == '.')
                        continue;
                char path[96];
                int tid = atoi(de->d_name);
                double ns = 0;
                snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                if (fscanf(f, "%lf", &ns) != 1)
                        ns = 0;
                fclose(f);
                snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
                s->t[s->n].comm[0] = 0;
                if ((f = fopen(path, "r"))) {
                        if (fgets(s->t[s->n].comm, sizeof(s->t[s->n].comm), f))
                                s->t[s->n].comm[strcspn(s->t[s->n].comm, "\n")] = 0;
                        fclose(f);
                }
                s->t[s->n].tid = tid;
                s->t[s->n].ns = ns;
                s->n++;
        }
        closedir(d);
}

/* "name ns, ..." per record of @n: CPU time between @a and now, summed
 * by thread name (threads that started meanwhile count from 0). */
static void threads_since(const struct threads *a, long n, char *buf, size_t cap)
{
        struct threads b;
        threads_snap(&b);
        char names[MAX_THREADS][24];
        double sum[MAX_THREADS];
        int k = 0;
        for (int i = 0; i < b.n; i++) {
                double ns = b.t[i].ns;
                for (int j = 0; j < a->n; j++)
                        if (a->t[j].tid == b.t[i].tid)
                                ns -= a->t[j].ns;
                int m = 0;
                while (m < k && strcmp(names[m], b.t[i].comm))
                        m++;
                if (m == k) {
                        snprintf(names[k], sizeof(names[k]), "%s", b.t[i].comm);
                        sum[k++] = 0;
                }
                sum[m] += ns;
        }
        size_t off = 0;
        buf[0] = 0;
        for (int m = 0; m < k && off < cap; m++)
                if (sum[m] / (double)n >= 1)
                        off += (size_t)snprintf(buf + off, cap - off, "%s%s %.0f",
                                                off ? ", " : "", names[m],
                                                sum[m] / (double)n);
}

/* One timed run: rate (records/s) and CPU per record (ns). */
struct run {
        double rate, cpu_ns;
        double first_ms;   /* replay: from the start to the first record */
        double steady;     /* replay: records/s from the first record to the last */
        char threads[256]; /* append: CPU ns per record by thread name */
        double tail_ms;    /* append: from the last append to the last completion */
};

static struct run run_end(double t0, double c0, long n)
{
        double t = now_s() - t0, c = cpu_s() - c0;
        return (struct run){ (double)n / t, c / (double)n * 1e9, 0, 0, "", 0 };
}

/* ---- Messages as the adaptor hands them over ---- */

static char value[100];

static wal_msg *make_msg(long i)
{
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_DATA, value, sizeof(value), &m) < 0)
                die("wal_msg_new");
        /* What the adaptor's time-tick interceptor sets on every message. */
        uint64_t tick = ((uint64_t)1767225600000 << 18) | (uint64_t)(i & 0x3ffff);
        if (wal_msg_set_time_tick(m, tick) < 0 || wal_msg_set_term(m, 1) < 0 ||
            wal_msg_set_last_confirmed(m, WAL_MSGID(0, (uint64_t)i)) < 0)
                die("wal_msg_set_*");
        return m;
}

/* The key our records carry for message @i, made by the backend's own key
 * encoder (impls/kafka/kafka-key.c: the compact layout for these messages,
 * since 2026-11-22; before, the magic "\0wal" and the protobuf envelope). */
static size_t our_key(long i, uint8_t *buf, size_t cap)
{
        if (cap < KAFKA_KEY_COMPACT_MAX)
                die("key buffer");
        wal_msg *m = make_msg(i);
        size_t len = kafka_key_compact(m, buf);
        wal_msg_unref(m);
        if (!len)
                die("key");
        return len;
}

/* ---- Raw librdkafka (REF-RDK) ---- */

static atomic_long raw_ok;

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        if (!m->err)
                atomic_fetch_add(&raw_ok, 1);
}

/* @key: also send this record key (NULL: none). */
static struct run run_raw(const char *bs, const char *topic, long n, const uint8_t *key,
                          size_t klen)
{
        char errstr[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bs, errstr, sizeof(errstr));
        for (size_t i = 0; i < sizeof(common_props) / sizeof(common_props[0]); i++)
                rd_kafka_conf_set(c, common_props[i][0], common_props[i][1], errstr,
                                  sizeof(errstr));
        rd_kafka_conf_set_dr_msg_cb(c, raw_dr);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
        if (!rk)
                die(errstr);
        atomic_store(&raw_ok, 0);
        /* Connect and create the topic first, as the backend's build and
         * open do outside the timed loop. */
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        for (int tries = 0;; tries++) {
                const struct rd_kafka_metadata *md = NULL;
                bool ready = false;
                if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0) {
                        ready = md->topic_cnt == 1 && !md->topics[0].err &&
                                md->topics[0].partition_cnt > 0;
                        rd_kafka_metadata_destroy(md);
                }
                if (ready)
                        break;
                if (tries > 200)
                        die("raw: topic not ready");
                usleep(20000);
        }
        rd_kafka_topic_destroy(rkt);
        struct threads th;
        threads_snap(&th);
        double t0 = now_s(), c0 = cpu_s();
        for (long i = 0; i < n; i++) {
                for (;;) {
                        rd_kafka_resp_err_t err =
                                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                                  RD_KAFKA_V_PARTITION(0),
                                                  RD_KAFKA_V_VALUE(value, sizeof(value)),
                                                  RD_KAFKA_V_KEY(key, key ? klen : 0),
                                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                  RD_KAFKA_V_END);
                        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                                break;
                        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                die(rd_kafka_err2str(err));
                        rd_kafka_poll(rk, 1);
                }
                if ((i & 1023) == 0)
                        rd_kafka_poll(rk, 0);
        }
        double t_last = now_s();
        rd_kafka_flush(rk, 60000);
        struct run r = run_end(t0, c0, n);
        r.tail_ms = (now_s() - t_last) * 1e3;
        threads_since(&th, n, r.threads, sizeof(r.threads));
        if (atomic_load(&raw_ok) != n)
                die("raw: not every message was delivered");
        rd_kafka_destroy(rk);
        return r;
}

/* ---- The backend ---- */

struct ours_done {
        atomic_long ok, failed;
};

static void ours_cb(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)id;
        (void)err;
        struct ours_done *d = arg;
        if (status == 0)
                atomic_fetch_add(&d->ok, 1);
        else
                atomic_fetch_add(&d->failed, 1);
}

static struct walimpls_opener *build(const char *bs, bool fencing, bool linger0)
{
        wal_config *cfg = NULL;
        wal_error *e = NULL;
        const struct walimpls_builder *b = NULL;
        if (wal_config_new(&cfg) < 0 || wal_registry_find("kafka", &b, &e) < 0)
                die("no kafka backend");
        char key[128];
        wal_config_set(cfg, "kafka.bootstrap.servers", bs, NULL);
        wal_config_set(cfg, "kafka.fetch.wait.max.ms", "10", NULL);
        for (size_t i = 0; i < sizeof(common_props) / sizeof(common_props[0]); i++) {
                snprintf(key, sizeof(key), "kafka.%s", common_props[i][0]);
                wal_config_set(cfg, key, common_props[i][1], NULL);
        }
        wal_config_set(cfg, "kafkawal.fencing", fencing ? "true" : "false", NULL);
        if (linger0)
                wal_config_set(cfg, "kafka.linger.ms", "0", NULL);
        if (getenv("BENCH_FQ"))
                wal_config_set(cfg, "kafkawal.fence_queue", getenv("BENCH_FQ"), NULL);
        struct walimpls_opener *o = NULL;
        if (b->build(cfg, &o, &e) < 0)
                die(wal_error_message(e));
        wal_config_free(cfg);
        return o;
}

static struct run run_ours(struct walimpls_opener *o, const char *channel, long n)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = 1,
                                           .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        if (o->ops->open(o, &opts, &w, &e) < 0)
                die(wal_error_message(e));
        struct ours_done d = { 0 };
        /* The messages, made before the clock starts as raw's value is:
         * building a message is the caller's work (the adaptor's, at the
         * public API), as preparing the value is raw's caller's.  MSG_POOL
         * distinct messages, appended in turn (the backend never modifies
         * a message it is given, and keeps its own reference while it
         * needs one). */
        static wal_msg *pool[MSG_POOL];
        for (long i = 0; i < MSG_POOL; i++)
                pool[i] = make_msg(i);
        struct threads th;
        threads_snap(&th);
        double t0 = now_s(), c0 = cpu_s();
        for (long i = 0; i < n; i++)
                if (w->ops->append(w, pool[i % MSG_POOL], ours_cb, &d) < 0)
                        die("append refused");
        double t_last = now_s();
        /* As raw's loop ends in rd_kafka_flush: wal.flush sends what
         * linger.ms still holds at once, and waits for the completions. */
        int fr = getenv("BENCH_NOFLUSH") ? -EOPNOTSUPP : walimpls_flush(w, 60000, &e);
        if (fr < 0 && fr != -EOPNOTSUPP)
                die(wal_error_message(e));
        while (atomic_load(&d.ok) + atomic_load(&d.failed) < n)
                usleep(200);
        struct run r = run_end(t0, c0, n);
        r.tail_ms = (now_s() - t_last) * 1e3;
        threads_since(&th, n, r.threads, sizeof(r.threads));
        for (long i = 0; i < MSG_POOL; i++)
                wal_msg_unref(pool[i]);
        if (atomic_load(&d.failed))
                die("ours: appends failed");
        w->ops->close(w);
        return r;
}

/* ---- Replay ---- */

static struct run replay_raw(const char *bs, const char *topic, long n)
{
        char errstr[256];
        struct threads th;
        threads_snap(&th);
        double t0 = now_s(), c0 = cpu_s();
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bs, errstr, sizeof(errstr));
        for (size_t i = 0; i < sizeof(consumer_props) / sizeof(consumer_props[0]); i++)
                if (rd_kafka_conf_set(c, consumer_props[i][0], consumer_props[i][1], errstr,
                                      sizeof(errstr)) != RD_KAFKA_CONF_OK)
                        die(errstr);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
        if (!rk)
                die(errstr);
        rd_kafka_poll_set_consumer(rk);
        /* As the scanner does: watermarks first (connects), then assign. */
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000))
                die("raw replay: watermarks");
        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        /* The start as the scanner's ALL makes it: the low watermark. */
        rd_kafka_topic_partition_list_add(pl, topic, 0)->offset = lo;
        rd_kafka_assign(rk, pl);
        rd_kafka_topic_partition_list_destroy(pl);
        long got = 0;
        double first = 0;
        while (got < n) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                if (!m)
                        die("raw replay stalled");
                if (m->err)
                        die(rd_kafka_message_errstr(m));
                if (got++ == 0)
                        first = now_s();
                rd_kafka_message_destroy(m);
        }
        struct run r = run_end(t0, c0, n);
        threads_since(&th, n, r.threads, sizeof(r.threads));
        double t1 = t0 + (double)n / r.rate;
        r.first_ms = (first - t0) * 1e3;
        r.steady = (double)(n - 1) / (t1 - first);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return r;
}

static struct run replay_ours(struct walimpls_opener *o, const char *channel, long n)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = 1,
                                           .access = WAL_ACCESS_RO };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        if (o->ops->open(o, &opts, &w, &e) < 0)
                die(wal_error_message(e));
        struct walimpls_read_opts ro = { .name = "bench",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *s = NULL;
        struct threads th;
        threads_snap(&th);
        double t0 = now_s(), c0 = cpu_s();
        if (w->ops->read(w, &ro, &s, &e) < 0)
                die(wal_error_message(e));
        double first = 0;
        for (long i = 0; i < n; i++) {
                wal_msg *m = NULL;
                if (s->ops->next(s, 1000, &m, &e) < 0)
                        die(wal_error_message(e));
                wal_msg_unref(m);
                if (i == 0)
                        first = now_s();
        }
        struct run r = run_end(t0, c0, n);
        threads_since(&th, n, r.threads, sizeof(r.threads));
        double t1 = t0 + (double)n / r.rate;
        r.first_ms = (first - t0) * 1e3;
        r.steady = (double)(n - 1) / (t1 - first);
        s->ops->close(s);
        w->ops->close(w);
        return r;
}

/* ---- Statistics ---- */

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* "median (min-max)" of @v[0..n) (sorted in place). */
static void summary(const char *what, double *v, int n)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        printf("  %-44s median %.2fx  (min %.2fx, max %.2fx, %d pairs)\n", what, med, v[0],
               v[n - 1], n);
}

/* ---- Latency ---- */

/* p50 and p99 of @v (sorted in place), in microseconds. */
static void percentiles(double *v, int n, double *p50, double *p99)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        *p50 = v[n / 2] * 1e6;
        *p99 = v[(n * 99) / 100] * 1e6;
}

static atomic_int lat_done;

static void lat_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)m;
        (void)opaque;
        atomic_store(&lat_done, 1);
}

/* One message at a time, linger.ms=0: produce -> delivery report. */
static void latency_raw(const char *bs, const char *topic, int n, double *p50, double *p99)
{
        char errstr[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bs, errstr, sizeof(errstr));
        for (size_t i = 0; i < sizeof(common_props) / sizeof(common_props[0]); i++)
                rd_kafka_conf_set(c, common_props[i][0], common_props[i][1], errstr,
                                  sizeof(errstr));
        rd_kafka_conf_set(c, "linger.ms", "0", errstr, sizeof(errstr));
        rd_kafka_conf_set_dr_msg_cb(c, lat_dr);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
        double *v = calloc((size_t)n, sizeof(*v));
        for (int i = -100; i < n; i++) {   /* 100 warm-up messages */
                atomic_store(&lat_done, 0);
                double t0 = now_s();
                if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                      RD_KAFKA_V_VALUE(value, sizeof(value)),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END))
                        die("raw latency: produce");
                while (!atomic_load(&lat_done))
                        rd_kafka_poll(rk, 1);
                if (i >= 0)
                        v[i] = now_s() - t0;
        }
        percentiles(v, n, p50, p99);
        free(v);
        rd_kafka_destroy(rk);
}

static void latency_ours(struct walimpls_opener *o, const char *channel, int n, double *p50,
                         double *p99)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = 1,
                                           .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        if (o->ops->open(o, &opts, &w, &e) < 0)
                die(wal_error_message(e));
        double *v = calloc((size_t)n, sizeof(*v));
        for (int i = -100; i < n; i++) {
                struct ours_done d = { 0 };
                double t0 = now_s();
                wal_msg *m = make_msg(i + 100);
                if (w->ops->append(w, m, ours_cb, &d) < 0)
                        die("ours latency: append");
                wal_msg_unref(m);
                /* Yield, not spin: on 2 cores a spinner starves the
                 * threads that complete the append (the raw side blocks in
                 * rd_kafka_poll the same way). */
                while (atomic_load(&d.ok) + atomic_load(&d.failed) == 0)
                        sched_yield();
                if (i >= 0)
                        v[i] = now_s() - t0;
        }
        percentiles(v, n, p50, p99);
        free(v);
        w->ops->close(w);
}

/* ---- Main ---- */

/* The backend's debug line at a fenced wal's close: register reads. */
static void print_register_line(void *arg, int level, const char *msg)
{
        (void)arg;
        (void)level;
        if (strstr(msg, "term-register reads"))
                printf("  %s\n", msg);
}

static void bench_append(const char *bs, long n, int pairs)
{
        struct walimpls_opener *off = build(bs, false, false), *on = build(bs, true, false);
        uint8_t key[256];
        size_t klen = our_key(n / 2, key, sizeof(key));
        double r_off[MAX_PAIRS], r_on[MAX_PAIRS], r_key[MAX_PAIRS], r_offkey[MAX_PAIRS],
               c_off[MAX_PAIRS], c_key[MAX_PAIRS];
        printf("append: %ld x 100-B records per run, %d pairs; rate in records/s, "
               "[CPU ns per record]; key of %zu B\n", n, pairs, klen);
        for (int p = 0; p < pairs; p++) {
                char t[4][64];
                snprintf(t[0], sizeof(t[0]), "raw-%d", p);
                snprintf(t[1], sizeof(t[1]), "rawkey-%d", p);
                snprintf(t[2], sizeof(t[2]), "off-%d", p);
                snprintf(t[3], sizeof(t[3]), "on-%d", p);
                struct run raw, rawk, o1, o2;
                if (p % 2 == 0) {
                        raw = run_raw(bs, t[0], n, NULL, 0);
                        rawk = run_raw(bs, t[1], n, key, klen);
                        o1 = run_ours(off, t[2], n);
                        o2 = run_ours(on, t[3], n);
                } else {
                        o2 = run_ours(on, t[3], n);
                        o1 = run_ours(off, t[2], n);
                        rawk = run_raw(bs, t[1], n, key, klen);
                        raw = run_raw(bs, t[0], n, NULL, 0);
                }
                printf("pair %d: raw %.0f [%.0f]  raw+key %.0f [%.0f]  ours fencing=off %.0f "
                       "[%.0f]  fencing=on %.0f [%.0f]\n", p, raw.rate, raw.cpu_ns, rawk.rate,
                       rawk.cpu_ns, o1.rate, o1.cpu_ns, o2.rate, o2.cpu_ns);
                printf("  CPU ns per record by thread: raw: %s;  raw+key: %s;  ours fencing=off: "
                       "%s;  fencing=on: %s\n", raw.threads, rawk.threads, o1.threads,
                       o2.threads);
                fflush(stdout);
                r_off[p] = o1.rate / raw.rate;
                r_on[p] = o2.rate / raw.rate;
                r_key[p] = rawk.rate / raw.rate;
                r_offkey[p] = o1.rate / rawk.rate;
                c_off[p] = raw.cpu_ns / o1.cpu_ns;
                c_key[p] = raw.cpu_ns / rawk.cpu_ns;
        }
        summary("append ours fencing=off / raw (the goal)", r_off, pairs);
        summary("append ours fencing=on / raw (the goal)", r_on, pairs);
        summary("append raw+key / raw (record format)", r_key, pairs);
        summary("append ours fencing=off / raw+key", r_offkey, pairs);
        summary("CPU per record raw / ours fencing=off", c_off, pairs);
        summary("CPU per record raw / raw+key", c_key, pairs);
        off->ops->close(off);
        on->ops->close(on);
}

static void bench_replay(const char *bs, int pairs)
{
        struct walimpls_opener *o = build(bs, false, false);
        double r[MAX_PAIRS], st[MAX_PAIRS], f_raw[MAX_PAIRS], f_ours[MAX_PAIRS];
        printf("replay: %d records per run (written by the backend), %d pairs; rate in "
               "records/s, [CPU ns per record]\n", REPLAY_N, pairs);
        for (int p = 0; p < pairs; p++) {
                char ch[64], topic[80];
                snprintf(ch, sizeof(ch), "replay-%d", p);
                snprintf(topic, sizeof(topic), "wal-%s", ch);
                run_ours(o, ch, REPLAY_N);
                struct run raw, ours;
                if (p % 2 == 0) {
                        raw = replay_raw(bs, topic, REPLAY_N);
                        ours = replay_ours(o, ch, REPLAY_N);
                } else {
                        ours = replay_ours(o, ch, REPLAY_N);
                        raw = replay_raw(bs, topic, REPLAY_N);
                }
                printf("pair %d: raw consumer %.0f/s steady %.0f/s [%.0f] first after %.1f ms;  "
                       "scanner %.0f/s steady %.0f/s [%.0f] first after %.1f ms\n", p, raw.rate,
                       raw.steady, raw.cpu_ns, raw.first_ms, ours.rate, ours.steady,
                       ours.cpu_ns, ours.first_ms);
                printf("  CPU ns per record by thread: raw consumer: %s;  scanner: %s\n",
                       raw.threads, ours.threads);
                fflush(stdout);
                r[p] = ours.rate / raw.rate;
                st[p] = ours.steady / raw.steady;
                f_raw[p] = raw.first_ms;
                f_ours[p] = ours.first_ms;
        }
        summary("replay scanner / raw consumer (the goal)", r, pairs);
        summary("replay steady (first record to last)", st, pairs);
        qsort(f_raw, (size_t)pairs, sizeof(double), cmp_double);
        qsort(f_ours, (size_t)pairs, sizeof(double), cmp_double);
        printf("  first record after (ms): raw median %.1f (%.1f-%.1f), scanner median %.1f "
               "(%.1f-%.1f)\n",
               f_raw[pairs / 2], f_raw[0], f_raw[pairs - 1], f_ours[pairs / 2], f_ours[0],
               f_ours[pairs - 1]);
        o->ops->close(o);
}

static void bench_latency(const char *bs)
{
        struct walimpls_opener *loff = build(bs, false, true), *lon = build(bs, true, true);
        double a50, a99, b50, b99, c50, c99;
        latency_raw(bs, "lat-raw", 2000, &a50, &a99);
        latency_ours(loff, "lat-off", 2000, &b50, &b99);
        latency_ours(lon, "lat-on", 2000, &c50, &c99);
        printf("latency: append->ack, 1 in flight, linger.ms=0, 2000 msgs: raw p50 %.0f us "
               "p99 %.0f us; ours fencing=off p50 %.0f p99 %.0f (p99 %.2fx); fencing=on p50 "
               "%.0f p99 %.0f (p99 %.2fx)\n", a50, a99, b50, b99, b99 / a99, c50, c99,
               c99 / a99);
        loff->ops->close(loff);
        lon->ops->close(lon);
}

int main(int argc, char **argv)
{
        const char *what = argc > 1 ? argv[1] : "all";
        long n = argc > 2 ? atol(argv[2]) : 1000000;
        int pairs = argc > 3 ? atoi(argv[3]) : 5;
        bool all = strcmp(what, "all") == 0;
        if (n < 1 || pairs < 1 || pairs > MAX_PAIRS ||
            (!all && strcmp(what, "append") && strcmp(what, "replay") &&
             strcmp(what, "latency") && strcmp(what, "ours") && strcmp(what, "ours-fenced") &&
             strcmp(what, "raw") && strcmp(what, "raw-key")))
                die("usage: bench-kafka [append|replay|latency|all|ours|ours-fenced|raw|raw-key] "
                    "[appends per run] [pairs 1..64]");
        memset(value, 'v', sizeof(value));
        struct kafka_mock_host *h = NULL;
        if (kafka_mock_host_start(1, &h, NULL) < 0)
                die("mock cluster");
        const char *bs = kafka_mock_host_bootstraps(h);
        if (strncmp(what, "ours", 4) == 0) {
                /* Only ours, for a profiler (perf record). */
                bool fenced = strcmp(what, "ours-fenced") == 0;
                wal_set_log_hook(print_register_line, NULL);
                struct walimpls_opener *o = build(bs, fenced, false);
                for (int p = 0; p < pairs; p++) {
                        char ch[32];
                        snprintf(ch, sizeof(ch), "ours-only-%d", p);
                        struct run r = run_ours(o, ch, n);
                        printf("ours fencing=%s %.0f/s [%.0f ns CPU per record: %s] "
                               "tail %.1f ms\n", fenced ? "on" : "off", r.rate, r.cpu_ns,
                               r.threads, r.tail_ms);
                }
                o->ops->close(o);
        }
        if (strncmp(what, "raw", 3) == 0) {
                /* Only the reference, to profile it the same way. */
                uint8_t key[256];
                bool with_key = strcmp(what, "raw-key") == 0;
                size_t klen = with_key ? our_key(n / 2, key, sizeof(key)) : 0;
                for (int p = 0; p < pairs; p++) {
                        char t[32];
                        snprintf(t, sizeof(t), "raw-only-%d", p);
                        struct run r = run_raw(bs, t, n, with_key ? key : NULL, klen);
                        printf("%s %.0f/s [%.0f ns CPU per record: %s] tail %.1f ms\n",
                               what, r.rate, r.cpu_ns, r.threads, r.tail_ms);
                }
        }
        if (all || strcmp(what, "append") == 0)
                bench_append(bs, n, pairs);
        /* A replay run takes 10-20 ms (a third of it waiting for the first
         * fetch): REPLAY_PAIRS_PER_PAIR times as many pairs as asked. */
        if (all || strcmp(what, "replay") == 0)
                bench_replay(bs, pairs * REPLAY_PAIRS_PER_PAIR > MAX_PAIRS ?
                                         MAX_PAIRS : pairs * REPLAY_PAIRS_PER_PAIR);
        if (all || strcmp(what, "latency") == 0)
                bench_latency(bs);
        kafka_mock_host_stop(h);
        return 0;
}
