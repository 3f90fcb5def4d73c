/* SPDX-License-Identifier: MIT */
/*
 * utility/cycles.c: walu_cycles()'s calibration (see utility/walu.h).  The
 * TSC is used only where the kernel's current clocksource is "tsc": the
 * kernel then trusts it as constant-rate and synchronised across CPUs (it
 * switches away from it when it is not).  Its rate is measured once against
 * CLOCK_MONOTONIC over 1 ms (reading jitter of a few hundred ns: under
 * 0.1 %).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "utility/walu.h"

struct walu_cycles_cal walu_cycles_cal = { .tsc = 0, .ns_per_cycle = 1.0 };

static pthread_once_t cycles_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static int clocksource_is_tsc(void)
{
        FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                        "re");
        if (!f)
                return 0;
        char buf[32] = "";
        int ok = fgets(buf, sizeof(buf), f) && strcmp(buf, "tsc\n") == 0;
        fclose(f);
        return ok;
}
#endif

static void cycles_calibrate(void)
{
#if defined(__x86_64__) || defined(__i386__)
        if (!clocksource_is_tsc())
                return;
        uint64_t t0 = walu_monotonic_ns();
        uint64_t c0 = __builtin_ia32_rdtsc();
        uint64_t t1, c1;
        do {
                t1 = walu_monotonic_ns();
                c1 = __builtin_ia32_rdtsc();
        } while (t1 - t0 < 1000000u);
        if (c1 <= c0)
                return;
        walu_cycles_cal.ns_per_cycle = (double)(t1 - t0) / (double)(c1 - c0);
        __atomic_store_n(&walu_cycles_cal.tsc, 1, __ATOMIC_RELEASE);
#endif
}

void walu_cycles_init(void)
{
        pthread_once(&cycles_once, cycles_calibrate);
}
