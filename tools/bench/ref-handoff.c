/* SPDX-License-Identifier: MIT */
/*
 * tools/bench/ref-handoff.c: REF-SPIN and REF-FUTEX, the in-process handoff
 * references (perf-anchors §9.3) for the adaptor's append-to-delivery
 * latency.
 *
 * Two threads, pinned to CPU 0 and CPU 1 when there are two, ping-pong one
 * atomic int: the pinger stores 1 and waits for 0, the ponger waits for 1
 * and stores 0.  One-way latency is half of each round trip, so no clock is
 * read on the receiving side.  --mode spin waits by spinning on the int
 * (acquire loads, release stores): the fastest a writer can hand a record
 * to an active reader.  --mode futex waits with FUTEX_WAIT_PRIVATE and
 * every store is followed by FUTEX_WAKE_PRIVATE: the cost of waking a
 * parked reader, which bench-api's "parked" workload is compared to.
 *
 * --pace-us N (the parked-reader goal's reference in run-all.sh, paced as
 * bench-api's parked workload is): the pinger sleeps N
 * microseconds before each store, stamps the time, and the ponger reads the
 * clock when it wakes, so the one-way figure is that of a reader that has
 * been parked for about N microseconds, measured the way bench-api's parked
 * workload measures (clock at the sender before the store, clock at the
 * receiver after the wake-up).  On the 2-vCPU VMs a paced wake-up costs
 * more than a ping-pong one (the idle vCPU must be woken first).
 *
 * Usage: ref-handoff --mode spin|futex [--count N] [--pace-us N] (default
 *        200000 spin, 20000 futex; 1000 untimed round trips first)
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench-report.h"

#define WARMUP 1000

static _Atomic int flag;
static bool use_futex;
static long total;      /* round trips, warm-up included */
static long pace_us;    /* --pace-us: the pinger sleeps this long before each store */
static _Atomic uint64_t sent_ns;        /* paced: when the pinger stored */
static struct bench_lat paced_lat;      /* paced: one-way, measured by the ponger */

static void futex_wait(_Atomic int *addr, int val)
{
        syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic int *addr)
{
        syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

/* Store @val, wake the other side if it may be parked. */
static void post(int val)
{
        atomic_store_explicit(&flag, val, memory_order_release);
        if (use_futex)
                futex_wake(&flag);
}

/* Wait until the flag is @want (it is !@want until then). */
static void await(int want)
{
        while (atomic_load_explicit(&flag, memory_order_acquire) != want) {
                if (use_futex)
                        futex_wait(&flag, !want);
                else
                        cpu_relax();
        }
}

static void *ponger(void *arg)
{
        (void)arg;
        bench_pin(1);
        for (long i = 0; i < total; i++) {
                await(1);
                if (pace_us && i >= WARMUP)
                        bench_lat_add(&paced_lat, bench_now_ns() - atomic_load(&sent_ns));
                post(0);
        }
        return NULL;
}

int main(int argc, char **argv)
{
        const char *mode = bench_arg(argc, argv, "mode", "spin");
        if (strcmp(mode, "spin") != 0 && strcmp(mode, "futex") != 0) {
                fprintf(stderr, "ref-handoff: --mode spin|futex\n");
                return 2;
        }
        use_futex = strcmp(mode, "futex") == 0;
        long count = atol(bench_arg(argc, argv, "count", use_futex ? "20000" : "200000"));
        if (count < 1) {
                fprintf(stderr, "ref-handoff: --count >= 1\n");
                return 2;
        }
        total = count + WARMUP;
        pace_us = atol(bench_arg(argc, argv, "pace-us", "0"));
        if (pace_us < 0 || (pace_us && !use_futex)) {
                fprintf(stderr, "ref-handoff: --pace-us >= 0, with --mode futex only\n");
                return 2;
        }
        struct timespec pace = { pace_us / 1000000, (pace_us % 1000000) * 1000 };

        pthread_t th;
        if (pthread_create(&th, NULL, ponger, NULL) != 0)
                bench_die("pthread_create", errno);
        bench_pin(0);
        struct bench_lat lat = { 0 };
        uint64_t start = 0;
        for (long i = 0; i < total; i++) {
                if (i == WARMUP)
                        start = bench_now_ns();
                if (pace_us) {
                        nanosleep(&pace, NULL);
                        atomic_store(&sent_ns, bench_now_ns());
                        post(1);
                        await(0);
                        continue;
                }
                uint64_t t0 = bench_now_ns();
                post(1);
                await(0);
                if (i >= WARMUP)
                        bench_lat_add(&lat, (bench_now_ns() - t0) / 2);
        }
        uint64_t stop = bench_now_ns();
        pthread_join(th, NULL);

        struct bench_result res = {
                .program = use_futex ? "ref-futex" : "ref-spin",
                .workload = pace_us ? "futex-paced" : mode,
                .records = (uint64_t)count, .seconds = (double)(stop - start) / 1e9,
                .writers = 1, .lat = pace_us ? &paced_lat : &lat,
        };
        bench_report(&res);
        free(lat.v);
        free(paced_lat.v);
        return 0;
}
