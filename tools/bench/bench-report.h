/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/bench-report.h: the result line of the programs run-all.sh
 * adds beside run-local.sh's (ref-handoff, ref-redis, bench-api).  Their
 * latencies go down to tens of nanoseconds, below the 0.1 us resolution of
 * bench_print(), so this line carries the percentiles in nanoseconds as well
 * as the microsecond fields every other program prints; the rest of the
 * line is bench_print()'s, so one parser reads both.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "bench-common.h"

/* Pin the calling thread to @cpu when there are two CPUs or more.  Every
 * latency program here pins its writer to CPU 0 and its reader to CPU 1,
 * so ours and the references are scheduled alike. */
static inline void bench_pin(int cpu)
{
        if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
                return;
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Print @r as one JSON line, with p50/p99/p99.9 also in nanoseconds. */
static inline void bench_report(struct bench_result *r)
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
               "\"syncs\":%" PRIu64 ",\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,"
               "\"p50_ns\":%.0f,\"p99_ns\":%.0f,\"p999_ns\":%.0f}\n",
               r->program, r->workload, r->writers, r->record_bytes, r->records, r->bytes,
               r->seconds, r->seconds > 0 ? (double)r->records / r->seconds : 0.0,
               r->seconds > 0 ? (double)r->bytes / r->seconds / 1e6 : 0.0, r->syncs, p50,
               p99, p999, p50 * 1000, p99 * 1000, p999 * 1000);
        fflush(stdout);
}

#endif /* BENCH_REPORT_H */
