/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/bench-common.h: what every benchmark program of this folder
 * shares, so that the reference programs and bench-local measure and report
 * in exactly the same way: a latency recorder (raw samples, sorted once at
 * the end, exact percentiles), a monotonic clock, command-line helpers and
 * the one-line JSON result.
 *
 * Header-only on purpose: each program stays a single standalone executable
 * that can be read top to bottom.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Latency samples ---- */

struct bench_lat {
        uint64_t *v;          /* samples in ns */
        size_t n, cap;
};

static inline void bench_lat_add(struct bench_lat *l, uint64_t ns)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 65536;
                uint64_t *nv = realloc(l->v, cap * sizeof(*nv));
                if (!nv) {
                        fprintf(stderr, "bench: out of memory for samples\n");
                        exit(2);
                }
                l->v = nv;
                l->cap = cap;
        }
        l->v[l->n++] = ns;
}

/* Move every sample of @src into @dst (merging per-thread recorders). */
static inline void bench_lat_merge(struct bench_lat *dst, struct bench_lat *src)
{
        for (size_t i = 0; i < src->n; i++)
                bench_lat_add(dst, src->v[i]);
        free(src->v);
        src->v = NULL;
        src->n = src->cap = 0;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Percentile @p (0..1) in microseconds; sorts on first use. */
static inline double bench_lat_pct_us(struct bench_lat *l, double p)
{
        if (l->n == 0)
                return 0.0;
        size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
        return (double)l->v[i] / 1000.0;
}

static inline void bench_lat_sort(struct bench_lat *l)
{
        if (l->n > 1)
                qsort(l->v, l->n, sizeof(l->v[0]), bench_cmp_u64);
}

/* ---- Result line ---- */

struct bench_result {
        const char *program;   /* "ref-sync", "bench-local", ... */
        const char *workload;  /* "sync1", "writers16", ... */
        uint64_t records;
        uint64_t bytes;        /* payload bytes */
        uint64_t stored_bytes; /* bytes the backend stores them in, 0 unknown */
        double seconds;
        uint64_t syncs;        /* fdatasync calls, 0 if not counted */
        int writers;
        size_t record_bytes;
        struct bench_lat *lat; /* may be NULL (scans) */
        double cpu_seconds;    /* CPU time of the whole process over @seconds
                                * (every thread), 0 when not measured */
};

static inline void bench_print(struct bench_result *r)
{
        double p50 = 0, p99 = 0, p999 = 0;
        if (r->lat && r->lat->n) {
                bench_lat_sort(r->lat);
                p50 = bench_lat_pct_us(r->lat, 0.50);
                p99 = bench_lat_pct_us(r->lat, 0.99);
                p999 = bench_lat_pct_us(r->lat, 0.999);
        }
        printf("{\"program\":\"%s\",\"workload\":\"%s\",\"writers\":%d,"
               "\"record_bytes\":%zu,\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ","
               "\"seconds\":%.4f,\"records_per_s\":%.1f,\"mb_per_s\":%.2f,"
               "\"syncs\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"stored_bytes\":%" PRIu64 ",\"stored_mb_per_s\":%.2f,\"cpu_seconds\":%.4f}\n",
               r->program, r->workload, r->writers, r->record_bytes, r->records, r->bytes,
               r->seconds, r->seconds > 0 ? (double)r->records / r->seconds : 0.0,
               r->seconds > 0 ? (double)r->bytes / r->seconds / 1e6 : 0.0, r->syncs, p50,
               p99, p999, r->stored_bytes,
               r->seconds > 0 ? (double)r->stored_bytes / r->seconds / 1e6 : 0.0,
               r->cpu_seconds);
        fflush(stdout);
}

/* ---- Command line: --key value pairs ---- */

/* @returns the value after "--@key" in argv, or @def. */
static inline const char *bench_arg(int argc, char **argv, const char *key, const char *def)
{
        for (int i = 1; i + 1 < argc; i++)
                if (argv[i][0] == '-' && argv[i][1] == '-' && strcmp(argv[i] + 2, key) == 0)
                        return argv[i + 1];
        return def;
}

/* A size with an optional k/m/g suffix (powers of 1024). */
static inline uint64_t bench_parse_size(const char *s)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s) {
                fprintf(stderr, "bench: bad size '%s'\n", s);
                exit(2);
        }
        switch (*end) {
        case 'k': case 'K': v <<= 10; break;
        case 'm': case 'M': v <<= 20; break;
        case 'g': case 'G': v <<= 30; break;
        case '\0': break;
        default:
                fprintf(stderr, "bench: bad size '%s'\n", s);
                exit(2);
        }
        return v;
}

static inline uint64_t bench_arg_size(int argc, char **argv, const char *key, const char *def)
{
        return bench_parse_size(bench_arg(argc, argv, key, def));
}

static inline double bench_arg_double(int argc, char **argv, const char *key, const char *def)
{
        return strtod(bench_arg(argc, argv, key, def), NULL);
}

static inline void bench_die(const char *what, int err)
{
        fprintf(stderr, "bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
        exit(1);
}

#endif /* BENCH_COMMON_H */
