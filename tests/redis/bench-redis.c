/* SPDX-License-Identifier: MIT */
/*
 * tests/redis/bench-redis.c: Redis backend throughput against raw hiredis,
 * side by side (a benchmark run by hand, never a timed test).
 *
 * One private redis-server (appendonly no, as REF-REDIS in
 * reference/perf-anchors.md section 9.6) serves, alternately, A/B/C pairs:
 *
 *   WAL   the backend: N async appends of 100-byte payloads from one
 *         thread, completions counted; one writer connection keeping up
 *         to redis.batch_max (1024) XADDs in flight
 *   RAW   REF-REDIS with the same connection count and pipeline depth:
 *         hiredis, one connection, XADD k * f <100 B> in batches of 1024
 *   LUA   raw hiredis, one EVALSHA of the backend's append script per
 *         record, batches of 1024: the cost of invoking a script for every
 *         record, which is why the backend sends one script call per group
 *         of records instead
 *
 * Each round uses fresh keys; the median of the rounds and the median of
 * the WAL/RAW pair ratios are printed, with MEMORY USAGE per entry of a WAL
 * stream and a RAW stream.
 *
 *   usage: bench-redis [records per run, default 100000] [rounds, default 5]
 *
 * One measurement against a running server, for scripts that alternate it
 * with a reference program (tests/redis/bench-redis-ratios.sh):
 *
 *   bench-redis --port P append N [key=value ...]
 *           N appends as above on a fresh channel; prints records/s
 *   bench-redis --port P latency N [key=value ...]
 *           N paced appends read by a tailing scanner; prints the p50 and
 *           p99 delivery latency in microseconds
 *   bench-redis --port P probe N
 *           the raw hiredis XADD -> XREAD BLOCK probe, same pacing; prints
 *           p50 and p99 in microseconds
 *
 * key=value pairs are redis.* properties (e.g. redis.tail_direct=true).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <wal/wal-registry.h>
#include <walimpls/walimpls.h>
#include "impls/redis/redis-internal.h"
#include "t-backend-redis.h"
#include "t-helpers.h"

#define BATCH 1024

static int cmp_d(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static atomic_long completed, failed;

static void on_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        (void)arg;
        (void)id;
        (void)err;
        if (status == 0)
                atomic_fetch_add(&completed, 1);
        else
                atomic_fetch_add(&failed, 1);
}

static double run_wal(struct walimpls_opener *o, const char *ch, long n, const char *payload)
{
        struct walimpls_open_opts oo = { .channel = ch, .term = 1, .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        wal_error *e = NULL;
        if (o->ops->open(o, &oo, &w, &e) < 0) {
                fprintf(stderr, "open: %s\n", wal_error_message(e));
                exit(1);
        }
        wal_msg *m = NULL;
        wal_msg_new(WAL_MSG_DATA, payload, 100, &m);
        atomic_store(&completed, 0);
        atomic_store(&failed, 0);
        uint64_t t0 = t_now_ms();
        for (long i = 0; i < n; i++)
                if (w->ops->append(w, m, on_done, NULL) < 0)
                        exit(2);
        while (atomic_load(&completed) + atomic_load(&failed) < n)
                t_sleep_ms(1);
        uint64_t ms = t_now_ms() - t0;
        if (atomic_load(&failed)) {
                fprintf(stderr, "%ld appends failed\n", atomic_load(&failed));
                exit(3);
        }
        wal_msg_unref(m);
        w->ops->close(w);
        return (double)n * 1000.0 / (double)(ms ? ms : 1);
}

/* Pipelined commands in batches; @argv gets the key at @key_at. */
static double run_raw(redisContext *c, int argc, const char **argv, const size_t *lens, long n)
{
        uint64_t t0 = t_now_ms();
        for (long done = 0; done < n;) {
                long b = n - done < BATCH ? n - done : BATCH;
                for (long i = 0; i < b; i++)
                        redisAppendCommandArgv(c, argc, argv, lens);
                for (long i = 0; i < b; i++) {
                        void *rep = NULL;
                        if (redisGetReply(c, &rep) != REDIS_OK ||
                            ((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
                                fprintf(stderr, "raw: %s\n",
                                        rep ? ((redisReply *)rep)->str : c->errstr);
                                exit(4);
                        }
                        freeReplyObject(rep);
                }
                done += b;
        }
        uint64_t ms = t_now_ms() - t0;
        return (double)n * 1000.0 / (double)(ms ? ms : 1);
}

/* ---- Delivery latency: append -> scanner, against an XADD -> XREAD probe ---- */

static int lat_n = 5000;
#define LAT_N lat_n
#define LAT_PACE_US 100

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pace(void)
{
        struct timespec ts = { 0, LAT_PACE_US * 1000 };
        nanosleep(&ts, NULL);
}

struct lat_reader {
        struct walimpls_scanner *s;   /* WAL side */
        int port;                     /* RAW side */
        const char *key;
        double *us;                   /* LAT_N latencies, microseconds */
};

static void *wal_reader(void *arg)
{
        struct lat_reader *lr = arg;
        for (int i = 0; i < LAT_N; i++) {
                wal_msg *m = NULL;
                if (lr->s->ops->next(lr->s, 10000, &m, NULL) < 0)
                        exit(5);
                uint64_t t = now_ns(), sent;
                memcpy(&sent, wal_msg_payload(m, NULL), sizeof(sent));
                lr->us[i] = (double)(t - sent) / 1000.0;
                wal_msg_unref(m);
        }
        return NULL;
}

static void *raw_reader(void *arg)
{
        struct lat_reader *lr = arg;
        redisContext *c = redisConnect("127.0.0.1", lr->port);
        char last[64] = "$";
        for (int i = 0; i < LAT_N;) {
                redisReply *rep = redisCommand(c, "XREAD COUNT 1000 BLOCK 10000 STREAMS %s %s",
                                               lr->key, last);
                if (!rep || rep->type != REDIS_REPLY_ARRAY)
                        exit(6);
                uint64_t t = now_ns();
                redisReply *ents = rep->element[0]->element[1];
                for (size_t k = 0; k < ents->elements && i < LAT_N; k++, i++) {
                        redisReply *f = ents->element[k]->element[1];
                        uint64_t sent;
                        memcpy(&sent, f->element[1]->str, sizeof(sent));
                        lr->us[i] = (double)(t - sent) / 1000.0;
                        snprintf(last, sizeof(last), "%s", ents->element[k]->element[0]->str);
                }
                freeReplyObject(rep);
        }
        redisFree(c);
        return NULL;
}

static double pct(double *v, int n, double q)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_d);
        return v[(int)(q * (n - 1))];
}

static void lat_wal(struct walimpls_opener *o, const char *ch, double *us)
{
        struct walimpls_open_opts oo = { .channel = ch, .term = 1, .access = WAL_ACCESS_RW };
        struct walimpls_wal *w = NULL;
        if (o->ops->open(o, &oo, &w, NULL) < 0)
                exit(7);
        struct walimpls_read_opts ro = { .name = "lat", .deliver = { .policy = WAL_DELIVER_LATEST } };
        struct lat_reader lr = { .us = us };
        if (w->ops->read(w, &ro, &lr.s, NULL) < 0)
                exit(8);
        pthread_t th;
        pthread_create(&th, NULL, wal_reader, &lr);
        char payload[100] = { 0 };
        for (int i = 0; i < LAT_N; i++) {
                uint64_t t = now_ns();
                memcpy(payload, &t, sizeof(t));
                wal_msg *m = NULL;
                wal_msg_new(WAL_MSG_DATA, payload, sizeof(payload), &m);
                if (w->ops->append(w, m, on_done, NULL) < 0)
                        exit(9);
                wal_msg_unref(m);
                pace();
        }
        pthread_join(th, NULL);
        lr.s->ops->close(lr.s);
        w->ops->close(w);
}

static void lat_raw(int port, const char *key, double *us)
{
        struct lat_reader lr = { .port = port, .key = key, .us = us };
        pthread_t th;
        pthread_create(&th, NULL, raw_reader, &lr);
        t_sleep_ms(50); /* let the reader block on "$" first */
        redisContext *c = redisConnect("127.0.0.1", port);
        char payload[100] = { 0 };
        for (int i = 0; i < LAT_N; i++) {
                uint64_t t = now_ns();
                memcpy(payload, &t, sizeof(t));
                freeReplyObject(redisCommand(c, "XADD %s * ts %b", key, payload, sizeof(payload)));
                pace();
        }
        pthread_join(th, NULL);
        redisFree(c);
}


static double median(double *v, int n)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_d);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long long mem_per_entry(redisContext *c, const char *key)
{
        redisReply *u = redisCommand(c, "MEMORY USAGE %s SAMPLES 0", key);
        redisReply *l = redisCommand(c, "XLEN %s", key);
        long long r = u && l && l->integer ? u->integer / l->integer : -1;
        freeReplyObject(u);
        freeReplyObject(l);
        return r;
}

/* One measurement against the server on @port (see the top comment). */
static int one_run(int port, const char *what, long n, int nkv, char **kv)
{
        char url[64];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
        wal_config *cfg = NULL;
        wal_config_new(&cfg);
        const struct walimpls_builder *b = NULL;
        wal_error *e = NULL;
        if (wal_registry_find("redis", &b, &e) < 0 ||
            wal_config_set(cfg, "redis.url", url, &e) < 0) {
                fprintf(stderr, "%s\n", wal_error_message(e));
                return 1;
        }
        for (int i = 0; i < nkv; i++) {
                char *eq = strchr(kv[i], '=');
                if (!eq)
                        return 64;
                *eq = '\0';
                if (wal_config_set(cfg, kv[i], eq + 1, &e) < 0) {
                        fprintf(stderr, "%s\n", wal_error_message(e));
                        return 64;
                }
        }
        char ch[64];
        snprintf(ch, sizeof(ch), "bench-%d-%ld", (int)getpid(), (long)t_now_ms());
        if (strcmp(what, "probe") == 0) {
                lat_n = (int)n;
                double *us = calloc((size_t)n, sizeof(*us));
                lat_raw(port, ch, us);
                printf("%.1f %.1f\n", pct(us, lat_n, 0.50), pct(us, lat_n, 0.99));
                free(us);
                wal_config_free(cfg);
                return 0;
        }
        struct walimpls_opener *o = NULL;
        if (b->build(cfg, &o, &e) < 0) {
                fprintf(stderr, "build: %s\n", wal_error_message(e));
                return 1;
        }
        if (strcmp(what, "append") == 0) {
                char payload[101];
                memset(payload, 'x', 100);
                payload[100] = '\0';
                printf("%.0f\n", run_wal(o, ch, n, payload));
        } else if (strcmp(what, "latency") == 0) {
                lat_n = (int)n;
                double *us = calloc((size_t)n, sizeof(*us));
                lat_wal(o, ch, us);
                printf("%.1f %.1f\n", pct(us, lat_n, 0.50), pct(us, lat_n, 0.99));
                free(us);
        } else {
                return 64;
        }
        o->ops->close(o);
        wal_config_free(cfg);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc >= 5 && strcmp(argv[1], "--port") == 0)
                return one_run(atoi(argv[2]), argv[3], atol(argv[4]), argc - 5, argv + 5);
        long n = argc > 1 ? atol(argv[1]) : 100000;
        int rounds = argc > 2 ? atoi(argv[2]) : 5;
        if (n <= 0 || rounds <= 0 || rounds > 50)
                return 64;
        struct t_redis *srv = NULL;
        int r = t_redis_start(NULL, &srv);
        if (r < 0) {
                fprintf(stderr, "redis-server: %s\n", strerror(-r));
                return 1;
        }
        wal_config *cfg = NULL;
        wal_config_new(&cfg);
        const struct walimpls_builder *b = NULL;
        wal_error *e = NULL;
        if (wal_registry_find("redis", &b, &e) < 0 ||
            wal_config_set(cfg, "redis.url", srv->url, &e) < 0) {
                fprintf(stderr, "%s\n", wal_error_message(e));
                return 1;
        }
        struct walimpls_opener *o = NULL, *od = NULL;
        if (b->build(cfg, &o, &e) < 0 ||
            wal_config_set(cfg, "redis.tail_direct", "true", &e) < 0 ||
            b->build(cfg, &od, &e) < 0) {
                fprintf(stderr, "build: %s\n", wal_error_message(e));
                return 1;
        }
        redisContext *c = redisConnect("127.0.0.1", srv->port);
        char payload[101];
        memset(payload, 'x', 100);
        payload[100] = '\0';

        /* LUA: the backend's append script, loaded as the backend loads it. */
        redisReply *sl = redisCommand(c, "SCRIPT LOAD %s", redis_script_text(REDIS_SCRIPT_APPEND));
        if (!sl || sl->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "SCRIPT LOAD failed\n");
                return 1;
        }
        char sha[41];
        snprintf(sha, sizeof(sha), "%s", sl->str);
        freeReplyObject(sl);
        freeReplyObject(redisCommand(c, "SET luaref:term 1"));
        static const char env[] = "\x08\x01\x10\x01"; /* version 1, type data */

        double wal[50], raw[50], lua[50], ratio[50];
        for (int i = 0; i < rounds; i++) {
                char ch[32], key[64];
                snprintf(ch, sizeof(ch), "bench%d", i);
                wal[i] = run_wal(o, ch, n, payload);

                snprintf(key, sizeof(key), "raw%d", i);
                const char *xa[] = { "XADD", key, "*", "f", payload };
                size_t xl[] = { 4, strlen(key), 1, 1, 100 };
                raw[i] = run_raw(c, 5, xa, xl, n);
                ratio[i] = wal[i] / raw[i];

                snprintf(key, sizeof(key), "luaref%d", i);
                const char *la[] = { "EVALSHA", sha, "2", key, "luaref:term", "1", env, payload };
                size_t ll[] = { 7, 40, 1, strlen(key), 11, 1, 4, 100 };
                lua[i] = run_raw(c, 8, la, ll, n);
        }
        printf("redis backend vs raw hiredis, %ld records of 100 B per run, %d rounds, "
               "appendonly no, one connection, pipeline %d\n", n, rounds, BATCH);
        for (int i = 0; i < rounds; i++)
                printf("  round %d: WAL %.0f/s  RAW XADD %.0f/s  ratio %.3f\n", i, wal[i],
                       raw[i], ratio[i]);
        double rmin = ratio[0], rmax = ratio[0];
        for (int i = 0; i < rounds; i++) {
                rmin = ratio[i] < rmin ? ratio[i] : rmin;
                rmax = ratio[i] > rmax ? ratio[i] : rmax;
        }
        double mr = median(ratio, rounds);
        printf("median WAL %.0f/s, median RAW %.0f/s, median ratio %.3f (min %.3f, max %.3f)\n",
               median(wal, rounds), median(raw, rounds), mr, rmin, rmax);
        printf("median LUA (one EVALSHA per record, raw hiredis) %.0f/s\n",
               median(lua, rounds));
        printf("memory per entry: WAL %lld B, RAW %lld B\n", mem_per_entry(c, "wal:bench0"),
               mem_per_entry(c, "raw0"));

        /* Delivery latency, alternating WAL, WAL with redis.tail_direct, RAW. */
        double *us = calloc(LAT_N, sizeof(*us));
        double w50[50], w99[50], d50[50], d99[50], r50[50], r99[50];
        int lr = rounds < 3 ? rounds : 3;
        for (int i = 0; i < lr; i++) {
                char ch[32], key[32];
                snprintf(ch, sizeof(ch), "lat%d", i);
                lat_wal(o, ch, us);
                w50[i] = pct(us, LAT_N, 0.50);
                w99[i] = pct(us, LAT_N, 0.99);
                snprintf(ch, sizeof(ch), "latd%d", i);
                lat_wal(od, ch, us);
                d50[i] = pct(us, LAT_N, 0.50);
                d99[i] = pct(us, LAT_N, 0.99);
                snprintf(key, sizeof(key), "latraw%d", i);
                lat_raw(srv->port, key, us);
                r50[i] = pct(us, LAT_N, 0.50);
                r99[i] = pct(us, LAT_N, 0.99);
                printf("  latency round %d: WAL p50 %.1f p99 %.1f us; WAL tail_direct p50 %.1f "
                       "p99 %.1f us; RAW XADD->XREAD p50 %.1f p99 %.1f us\n", i, w50[i],
                       w99[i], d50[i], d99[i], r50[i], r99[i]);
        }
        double m_w = median(w50, lr), m_d = median(d50, lr), m_r = median(r50, lr);
        printf("delivery latency (%d msgs paced %d us), median of p50s: WAL %.1f us (%.2fx RAW), "
               "WAL tail_direct %.1f us (%.2fx RAW), RAW %.1f us; median p99: WAL %.1f, "
               "tail_direct %.1f, RAW %.1f us\n", LAT_N, LAT_PACE_US, m_w, m_w / m_r, m_d,
               m_d / m_r, m_r, median(w99, lr), median(d99, lr), median(r99, lr));
        free(us);
        redisFree(c);
        od->ops->close(od);
        o->ops->close(o);
        wal_config_free(cfg);
        t_redis_free(srv);
        return 0;
}
