/* SPDX-License-Identifier: MIT */
/*
 * utility/walu.h: small internal helpers used across the tree (not installed).
 *
 * Three levels of checks:
 *   WAL_ASSERT_RETURN(expr, ret)  public API misuse: return @ret, never abort
 *   WAL_ASSERT(expr)              internal invariant: aborts (debug and release)
 *   WAL_BUG(fmt, ...)             impossible state: prints file/line, aborts
 */
#ifndef WALU_H
#define WALU_H

#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WALU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define WALU_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WALU_MAX(a, b) ((a) > (b) ? (a) : (b))
#define WALU_UNUSED __attribute__((unused))
#define WALU_LIKELY(x) __builtin_expect(!!(x), 1)
#define WALU_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WALU_CONTAINER_OF(ptr, type, member) \
        ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define WAL_ASSERT_RETURN(expr, ret)                                        \
        do {                                                                \
                if (WALU_UNLIKELY(!(expr)))                                 \
                        return (ret);                                       \
        } while (0)

#define WAL_BUG(...)                                                        \
        do {                                                                \
                fprintf(stderr, "libwal BUG at %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);                               \
                fputc('\n', stderr);                                        \
                abort();                                                    \
        } while (0)

#define WAL_ASSERT(expr)                                                    \
        do {                                                                \
                if (WALU_UNLIKELY(!(expr)))                                 \
                        WAL_BUG("assertion failed: %s", #expr);             \
        } while (0)

/* ---- Byte order for persistent formats: always big-endian ---- */

static inline void walu_put_be32(uint8_t *p, uint32_t v)
{
        v = htobe32(v);
        memcpy(p, &v, 4);
}
static inline void walu_put_be64(uint8_t *p, uint64_t v)
{
        v = htobe64(v);
        memcpy(p, &v, 8);
}
static inline uint32_t walu_get_be32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, 4);
        return be32toh(v);
}
static inline uint64_t walu_get_be64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
        return be64toh(v);
}

/* ---- Clocks ---- */

static inline uint64_t walu_monotonic_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t walu_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t walu_realtime_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CLOCK_REALTIME_COARSE in ms: the wall clock as of the kernel's last
 * timer tick, so never ahead of CLOCK_REALTIME and behind it by at most one
 * tick period (clock_getres(CLOCK_REALTIME_COARSE): 4 ms at HZ=250) plus
 * that tick's own delay; about a sixth of a CLOCK_REALTIME read here. */
static inline uint64_t walu_realtime_coarse_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- Elapsed time in cycles (utility/cycles.c) ----
 *
 * walu_cycles() is a counter for durations measured on hot paths: the TSC
 * where the kernel itself keeps time with it (clocksource "tsc", so it is
 * constant-rate and synchronised across CPUs), else CLOCK_MONOTONIC in ns.
 * walu_cycles_to_ns() converts a difference of two readings.  Call
 * walu_cycles_init() once before the first reading (idempotent, thread-safe;
 * the first call calibrates the TSC against CLOCK_MONOTONIC for 1 ms).
 * Readings are process-local: never stored or compared across processes. */
struct walu_cycles_cal {
        int tsc;                 /* 1: walu_cycles() reads the TSC */
        double ns_per_cycle;     /* 1.0 when it reads CLOCK_MONOTONIC */
};
extern struct walu_cycles_cal walu_cycles_cal;

void walu_cycles_init(void);

static inline uint64_t walu_cycles(void)
{
#if defined(__x86_64__) || defined(__i386__)
        if (walu_cycles_cal.tsc)
                return __builtin_ia32_rdtsc();
#endif
        return walu_monotonic_ns();
}

/* ns between two walu_cycles() readings @from <= @to (0 if @to < @from). */
static inline uint64_t walu_cycles_to_ns(uint64_t from, uint64_t to)
{
        if (to <= from)
                return 0;
        return (uint64_t)((double)(to - from) * walu_cycles_cal.ns_per_cycle);
}

/* Absolute CLOCK_MONOTONIC deadline @timeout_ms from now (for condvars set
 * to CLOCK_MONOTONIC). */
static inline struct timespec walu_deadline(int timeout_ms)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

/* ---- Checked size arithmetic ---- */

/* *ret = a + b; returns -EOVERFLOW (as -75) instead of wrapping. */
static inline int walu_size_add(size_t a, size_t b, size_t *ret)
{
        if (__builtin_add_overflow(a, b, ret))
                return -75; /* -EOVERFLOW */
        return 0;
}

/* ---- Strings ---- */

/* strdup that accepts NULL (returns NULL). */
static inline char *walu_strdup0(const char *s)
{
        return s ? strdup(s) : NULL;
}

/* ---- Memory faulted in ahead of use (utility/populate.c) ---- */

/* Fault in the pages of [@p, @p + @len) now, writable, so that the first
 * writes there take no page fault (2-4 us each on this project's VMs):
 * MADV_POPULATE_WRITE, or where the kernel refuses it, one atomic write of
 * each page's first byte that leaves its value as it was (safe on pages
 * already in use).  @p (borrowed) lies in a private anonymous read-write
 * mapping; an @p that is not page-aligned takes the second way.  Nothing
 * is reported: a page left out just faults later, as it would have. */
void walu_populate(void *p, size_t len);

/* ---- Logging through the public hook (wal/wal-log.h) ---- */

void walu_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* WALU_H */
