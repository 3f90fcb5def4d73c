/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-redis.c: REF-REDIS, the raw Redis delivery probe
 * (perf-anchors §9.6) that the Redis backend's tailing scanner is compared
 * to.
 *
 * Plain hiredis on two connections: a reader thread loops
 * XREAD COUNT 1000 BLOCK 10000 STREAMS <key> <last id> (starting at "$"),
 * the main thread XADDs <key> * ts <100 B> where the value begins with the
 * CLOCK_MONOTONIC time of the XADD call and the record's index.  The writer
 * paces exactly as bench-api's "parked" workload: it waits until the reader
 * has the previous record, sleeps --pace-us, then sends the next, so every
 * record wakes a reader blocked in XREAD.  Latency: from just before the
 * XADD to the reader's return from XREAD.
 *
 * --pin 1 pins the writer (main) thread to CPU 0 and the reader to CPU 1,
 * as bench-api's deliver/parked workloads pin their writer and reader by
 * default; --pin 0 (the default, as before) leaves both to the scheduler.
 * Compare like with like: bench-api --pin 1 against ref-redis --pin 1.
 *
 * Usage: ref-redis --port PORT [--host 127.0.0.1] [--count 5000]
 *                  [--pace-us 100] [--key ref-redis] [--pin 0|1]
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench-report.h"

#define WARMUP 200
#define VALUE_BYTES 100

struct probe {
        const char *host;
        int port;
        const char *key;
        long total;
        _Atomic long seen;
        struct bench_lat lat;
};

static bool pinning;

static redisContext *connect_or_die(const struct probe *p)
{
        redisContext *c = redisConnect(p->host, p->port);
        if (!c || c->err) {
                fprintf(stderr, "ref-redis: connect %s:%d: %s\n", p->host, p->port,
                        c ? c->errstr : "out of memory");
                exit(1);
        }
        return c;
}

static void *reader_main(void *arg)
{
        struct probe *p = arg;
        if (pinning)
                bench_pin(1);
        redisContext *c = connect_or_die(p);
        char last[64] = "$";
        while (atomic_load(&p->seen) < p->total) {
                redisReply *rep = redisCommand(c, "XREAD COUNT 1000 BLOCK 10000 STREAMS %s %s",
                                               p->key, last);
                uint64_t t = bench_now_ns();
                if (!rep || rep->type != REDIS_REPLY_ARRAY) {
                        fprintf(stderr, "ref-redis: XREAD: %s\n",
                                rep && rep->type == REDIS_REPLY_ERROR ? rep->str :
                                rep ? "timed out" : c->errstr);
                        exit(1);
                }
                redisReply *ents = rep->element[0]->element[1];
                for (size_t k = 0; k < ents->elements; k++) {
                        redisReply *fields = ents->element[k]->element[1];
                        const char *v = fields->element[1]->str;
                        uint64_t sent, index;
                        memcpy(&sent, v, sizeof(sent));
                        memcpy(&index, v + 8, sizeof(index));
                        if (index >= WARMUP)
                                bench_lat_add(&p->lat, t - sent);
                        snprintf(last, sizeof(last), "%s", ents->element[k]->element[0]->str);
                        atomic_store(&p->seen, (long)index + 1);
                }
                freeReplyObject(rep);
        }
        redisFree(c);
        return NULL;
}

int main(int argc, char **argv)
{
        struct probe p = {
                .host = bench_arg(argc, argv, "host", "127.0.0.1"),
                .port = atoi(bench_arg(argc, argv, "port", "6379")),
                .key = bench_arg(argc, argv, "key", "ref-redis"),
        };
        long count = atol(bench_arg(argc, argv, "count", "5000"));
        long pace_us = atol(bench_arg(argc, argv, "pace-us", "100"));
        pinning = atoi(bench_arg(argc, argv, "pin", "0")) != 0;
        if (count < 1 || pace_us < 0) {
                fprintf(stderr, "ref-redis: --count >= 1, --pace-us >= 0\n");
                return 2;
        }
        p.total = count + WARMUP;
        redisContext *c = connect_or_die(&p);
        freeReplyObject(redisCommand(c, "DEL %s", p.key));

        pthread_t th;
        if (pthread_create(&th, NULL, reader_main, &p) != 0)
                bench_die("pthread_create", errno);
        if (pinning)
                bench_pin(0);
        /* The reader's first XREAD must be blocked on "$" before any XADD. */
        struct timespec settle = { 0, 50 * 1000000 };
        nanosleep(&settle, NULL);

        char value[VALUE_BYTES] = { 0 };
        struct timespec pace = { pace_us / 1000000, (pace_us % 1000000) * 1000 };
        struct timespec nap = { 0, 20000 };
        uint64_t start = 0;
        for (long i = 0; i < p.total; i++) {
                if (i == WARMUP)
                        start = bench_now_ns();
                nanosleep(&pace, NULL);
                uint64_t t = bench_now_ns(), index = (uint64_t)i;
                memcpy(value, &t, sizeof(t));
                memcpy(value + 8, &index, sizeof(index));
                redisReply *rep = redisCommand(c, "XADD %s * ts %b", p.key, value,
                                               sizeof(value));
                if (!rep || rep->type == REDIS_REPLY_ERROR) {
                        fprintf(stderr, "ref-redis: XADD: %s\n", rep ? rep->str : c->errstr);
                        return 1;
                }
                freeReplyObject(rep);
                while (atomic_load(&p.seen) <= i)
                        nanosleep(&nap, NULL);
        }
        uint64_t stop = bench_now_ns();
        pthread_join(th, NULL);
        freeReplyObject(redisCommand(c, "DEL %s", p.key));
        redisFree(c);

        struct bench_result res = {
                .program = "ref-redis", .workload = "parked", .records = (uint64_t)count,
                .bytes = (uint64_t)count * VALUE_BYTES,
                .seconds = (double)(stop - start) / 1e9, .writers = 1,
                .record_bytes = VALUE_BYTES, .lat = &p.lat,
        };
        bench_report(&res);
        free(p.lat.v);
        return 0;
}
