/* SPDX-License-Identifier: MIT */
/*
 * tests/kafka/bench-kafka.c: the Kafka backend's append and replay rates as
 * ratios to raw librdkafka (REF-RDK, perf-anchors §9.5), side by side on one
 * in-process mock cluster, alternating A/B rounds.  A benchmark, not a test:
 * built, never run by `meson test`.
 *
 *   build-x/tests/kafka/bench-kafka [messages per run] [rounds]
 *
 * Every run uses a fresh topic.  Properties are identical on both sides:
 * the backend's producer defaults (enable.idempotence=true, acks=all,
 * linger.ms=5, socket.nagle.disable=true) plus REF-RDK's
 * queue.buffering.max.messages=1000000 and batch.num.messages=10000.
 * Raw: producev of 100-B values with RD_KAFKA_MSG_F_COPY, poll every 1024,
 * retry on queue full, flush.  Ours: walimpls append of 100-B data messages
 * (building each wal_msg included), wait for every completion; with
 * kafkawal.fencing off and on.  Replay: a raw assign()+consumer_poll loop vs
 * scanner next() over the same topic (the mock serves one message set per
 * fetch, so both are bound by it).  Latency: one append in flight at
 * linger.ms=0, append -> completion vs produce -> delivery report.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <walimpls/walimpls.h>
#include <wal/wal-config.h>
#include <wal/wal-registry.h>
#include "impls/kafka/kafka-internal.h"

static const char *const common_props[][2] = {
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "linger.ms", "5" },
        { "socket.nagle.disable", "true" },
        { "queue.buffering.max.messages", "1000000" },
        { "batch.num.messages", "10000" },
};

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
        fprintf(stderr, "bench-kafka: %s\n", what);
        exit(1);
}

static atomic_long raw_ok;

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        if (!m->err)
                atomic_fetch_add(&raw_ok, 1);
}

/* @hdr: also send a 24-byte "_wal" header, the size of our envelope for
 * these messages, to tell the cost of the record format from ours. */
static double run_raw_h(const char *bs, const char *topic, long n, bool hdr)
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
        char value[100];
        memset(value, 'v', sizeof(value));
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
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
                for (;;) {
                        rd_kafka_resp_err_t err =
                                hdr ? rd_kafka_producev(
                                        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_VALUE(value, sizeof(value)),
                                        RD_KAFKA_V_HEADER("_wal", value, 24),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)
                                    : rd_kafka_producev(
                                        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_VALUE(value, sizeof(value)),
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
        rd_kafka_flush(rk, 60000);
        double t = now_s() - t0;
        if (atomic_load(&raw_ok) != n)
                die("raw: not every message was delivered");
        rd_kafka_destroy(rk);
        return (double)n / t;
}

static double run_raw(const char *bs, const char *topic, long n)
{
        return run_raw_h(bs, topic, n, false);
}

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

static struct walimpls_opener *build_props(const char *bs, bool fencing, bool linger0)
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
        struct walimpls_opener *o = NULL;
        if (b->build(cfg, &o, &e) < 0)
                die(wal_error_message(e));
        wal_config_free(cfg);
        return o;
}

static struct walimpls_opener *build(const char *bs, bool fencing)
{
        return build_props(bs, fencing, false);
}

static struct walimpls_opener *build_linger0(const char *bs, bool fencing)
{
        return build_props(bs, fencing, true);
}

static double run_ours(struct walimpls_opener *o, const char *channel, long n)
{
        struct walimpls_open_opts opts = { .channel = channel, .term = 1,
                                           .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        if (o->ops->open(o, &opts, &w, &e) < 0)
                die(wal_error_message(e));
        char value[100];
        memset(value, 'v', sizeof(value));
        struct ours_done d = { 0 };
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
                wal_msg *m = NULL;
                if (wal_msg_new(WAL_MSG_DATA, value, sizeof(value), &m) < 0)
                        die("wal_msg_new");
                if (w->ops->append(w, m, ours_cb, &d) < 0)
                        die("append refused");
                wal_msg_unref(m);
        }
        while (atomic_load(&d.ok) + atomic_load(&d.failed) < n)
                usleep(200);
        double t = now_s() - t0;
        if (atomic_load(&d.failed))
                die("ours: appends failed");
        w->ops->close(w);
        return (double)n / t;
}

/* Replay @n records of @topic with a raw consumer. */
static double replay_raw(const char *bs, const char *topic, long n)
{
        char errstr[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bs, errstr, sizeof(errstr));
        rd_kafka_conf_set(c, "group.id", "bench", errstr, sizeof(errstr));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", errstr, sizeof(errstr));
        rd_kafka_conf_set(c, "fetch.wait.max.ms", "10", errstr, sizeof(errstr));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pl, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        double t0 = now_s();
        /* As the scanner does: watermarks first (connects), then assign. */
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000))
                die("raw replay: watermarks");
        rd_kafka_assign(rk, pl);
        rd_kafka_topic_partition_list_destroy(pl);
        long got = 0;
        while (got < n) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                if (!m)
                        die("raw replay stalled");
                if (!m->err)
                        got++;
                rd_kafka_message_destroy(m);
        }
        double t = now_s() - t0;
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return (double)n / t;
}

static double replay_ours(struct walimpls_opener *o, const char *channel, long n)
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
        double t0 = now_s();
        if (w->ops->read(w, &ro, &s, &e) < 0)
                die(wal_error_message(e));
        for (long i = 0; i < n; i++) {
                wal_msg *m = NULL;
                if (s->ops->next(s, 1000, &m, &e) < 0)
                        die(wal_error_message(e));
                wal_msg_unref(m);
        }
        double t = now_s() - t0;
        s->ops->close(s);
        w->ops->close(w);
        return (double)n / t;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

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
        char value[100];
        memset(value, 'v', sizeof(value));
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
        char value[100];
        memset(value, 'v', sizeof(value));
        for (int i = -100; i < n; i++) {
                struct ours_done d = { 0 };
                double t0 = now_s();
                wal_msg *m = NULL;
                if (wal_msg_new(WAL_MSG_DATA, value, sizeof(value), &m) < 0 ||
                    w->ops->append(w, m, ours_cb, &d) < 0)
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

int main(int argc, char **argv)
{
        long n = argc > 1 ? atol(argv[1]) : 200000;
        int rounds = argc > 2 ? atoi(argv[2]) : 3;
        /* Replays stay below the mock's 100 000 sets / 5 MiB partition cap. */
        long nr = n < 20000 ? n : 20000;
        struct kafka_mock_host *h = NULL;
        if (kafka_mock_host_start(1, &h, NULL) < 0)
                die("mock cluster");
        const char *bs = kafka_mock_host_bootstraps(h);
        struct walimpls_opener *off = build(bs, false), *on = build(bs, true);
        /* Latency openers: linger.ms=0, as the raw side. */
        struct walimpls_opener *loff = build_linger0(bs, false), *lon = build_linger0(bs, true);
        double s_rawh = 0, s_raw = 0, s_off = 0, s_on = 0, s_rraw = 0, s_rours = 0;
        char topic[64], ch[64];
        for (int r = 0; r < rounds; r++) {
                snprintf(topic, sizeof(topic), "raw-%d", r);
                double raw = run_raw(bs, topic, n);
                snprintf(topic, sizeof(topic), "rawh-%d", r);
                double rawh = run_raw_h(bs, topic, n, true);
                snprintf(ch, sizeof(ch), "off-%d", r);
                double o1 = run_ours(off, ch, n);
                snprintf(ch, sizeof(ch), "on-%d", r);
                double o2 = run_ours(on, ch, n);
                /* Replay: both readers read the same fresh topic. */
                snprintf(ch, sizeof(ch), "replay-%d", r);
                run_ours(off, ch, nr);
                char ourtopic[80];
                snprintf(ourtopic, sizeof(ourtopic), "wal-%s", ch);
                double rr = replay_raw(bs, ourtopic, nr);
                double ro = replay_ours(off, ch, nr);
                printf("round %d: append raw %.0f/s, raw+24B header %.0f/s (%.2fx), ours fencing=off %.0f/s (%.2fx), "
                       "fencing=on %.0f/s (%.2fx); replay raw %.0f/s, ours %.0f/s (%.2fx)\n",
                       r, raw, rawh, rawh / raw, o1, o1 / raw, o2, o2 / raw, rr, ro, ro / rr);
                fflush(stdout);
                s_raw += raw;
                s_rawh += rawh;
                s_off += o1;
                s_on += o2;
                s_rraw += rr;
                s_rours += ro;
        }
        double a50, a99, b50, b99, c50, c99;
        latency_raw(bs, "lat-raw", 2000, &a50, &a99);
        latency_ours(loff, "lat-off", 2000, &b50, &b99);
        latency_ours(lon, "lat-on", 2000, &c50, &c99);
        printf("append->ack latency, 1 in flight, linger.ms=0, 2000 msgs: raw p50 %.0f us "
               "p99 %.0f us; ours fencing=off p50 %.0f p99 %.0f (p99 %.2fx); fencing=on p50 "
               "%.0f p99 %.0f (p99 %.2fx)\n", a50, a99, b50, b99, b99 / a99, c50, c99,
               c99 / a99);
        loff->ops->close(loff);
        lon->ops->close(lon);
        printf("mean over %d rounds of %ld appends / %ld replays: append fencing=off %.2fx, "
               "fencing=on %.2fx of raw librdkafka (raw with a 24-byte header: %.2fx); "
               "replay %.2fx of a raw consumer\n",
               rounds, n, nr, s_off / s_raw, s_on / s_raw, s_rawh / s_raw, s_rours / s_rraw);
        off->ops->close(off);
        on->ops->close(on);
        kafka_mock_host_stop(h);
        return 0;
}
