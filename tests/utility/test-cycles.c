/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/test-cycles.c: walu_cycles() and walu_cycles_to_ns()
 * (utility/walu.h) measure what CLOCK_MONOTONIC measures, and
 * walu_realtime_coarse_ms() is never ahead of CLOCK_REALTIME.
 */
#include <stdint.h>
#include <time.h>

#include <criterion/criterion.h>

#include "utility/walu.h"

static void sleep_ms(long ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
                ;
}

/* A 30 ms sleep measured both ways: the calibrated counter agrees with
 * CLOCK_MONOTONIC to 2 % (a wrong rate, or the raw TSC taken for ns,
 * is off by far more). */
Test(cycles, a_difference_converts_to_monotonic_ns)
{
        walu_cycles_init();
        for (int i = 0; i < 3; i++) {
                uint64_t t0 = walu_monotonic_ns();
                uint64_t c0 = walu_cycles();
                sleep_ms(30);
                uint64_t c1 = walu_cycles();
                uint64_t t1 = walu_monotonic_ns();
                double want = (double)(t1 - t0);
                double got = (double)walu_cycles_to_ns(c0, c1);
                cr_assert(got <= want, "cycles %.0f ns, monotonic %.0f ns", got, want);
                cr_assert(got >= want * 0.98, "cycles %.0f ns, monotonic %.0f ns", got, want);
        }
        cr_assert_eq(walu_cycles_to_ns(10, 5), 0);
}

Test(cycles, init_twice_keeps_the_rate)
{
        walu_cycles_init();
        double r = walu_cycles_cal.ns_per_cycle;
        walu_cycles_init();
        cr_assert_eq(walu_cycles_cal.ns_per_cycle, r);
        cr_assert(r > 0.0);
}

/* The coarse clock is read first, so a coarse reading ahead of the precise
 * one taken after it would be a clock ahead of real time. */
Test(cycles, the_coarse_realtime_clock_is_never_ahead)
{
        for (int i = 0; i < 200000; i++) {
                uint64_t c = walu_realtime_coarse_ms();
                uint64_t p = walu_realtime_ms();
                cr_assert(c <= p, "coarse %llu ms ahead of realtime %llu ms",
                          (unsigned long long)c, (unsigned long long)p);
        }
}
