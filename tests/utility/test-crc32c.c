/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/test-crc32c.c: utility/crc32c.c.
 *
 * Published check values (the "123456789" check and the RFC 3720 iSCSI
 * vectors) against the software path and, on CPUs that have it, the SSE4.2
 * path; where the instruction is missing the dispatcher is checked to agree
 * with the software path instead.  Then chaining, and random buffers of
 * random lengths at random alignments (long enough to take the interleaved
 * three-lane path) compared between all implementations.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "utility/crc32c.h"

typedef uint32_t crc_fn(uint32_t crc, const void *buf, size_t len);

struct vector {
        const char *name;
        uint8_t data[32];
        size_t len;
        uint32_t crc;
};

static void fill_vectors(struct vector v[5])
{
        v[0] = (struct vector){ .name = "123456789", .len = 9, .crc = 0xE3069283u };
        memcpy(v[0].data, "123456789", 9);
        v[1] = (struct vector){ .name = "32 x 0x00", .len = 32, .crc = 0x8A9136AAu };
        v[2] = (struct vector){ .name = "32 x 0xFF", .len = 32, .crc = 0x62A8AB43u };
        memset(v[2].data, 0xff, 32);
        v[3] = (struct vector){ .name = "0..31", .len = 32, .crc = 0x46DD794Eu };
        v[4] = (struct vector){ .name = "31..0", .len = 32, .crc = 0x113FDB5Cu };
        for (int i = 0; i < 32; i++) {
                v[3].data[i] = (uint8_t)i;
                v[4].data[i] = (uint8_t)(31 - i);
        }
}

static void check_vectors(crc_fn *fn, const char *impl)
{
        struct vector v[5];
        fill_vectors(v);
        for (int i = 0; i < 5; i++) {
                uint32_t got = fn(0, v[i].data, v[i].len);
                cr_expect_eq(got, v[i].crc, "%s(%s) = 0x%08X, want 0x%08X", impl,
                             v[i].name, got, v[i].crc);
        }
}

Test(crc32c, sw_check_values)
{
        check_vectors(walu_crc32c_sw, "sw");
}

Test(crc32c, hw_check_values_or_dispatch_is_sw)
{
        if (walu_crc32c_hw_available()) {
                check_vectors(walu_crc32c_hw, "hw");
        } else {
                /* No instruction: the dispatcher must be the table path. */
                struct vector v[5];
                fill_vectors(v);
                for (int i = 0; i < 5; i++)
                        cr_expect_eq(walu_crc32c(0, v[i].data, v[i].len),
                                     walu_crc32c_sw(0, v[i].data, v[i].len));
        }
}

Test(crc32c, dispatch_check_values)
{
        /* Twice: the first call resolves, the second uses the cached choice. */
        check_vectors(walu_crc32c, "dispatch");
        check_vectors(walu_crc32c, "dispatch(cached)");
}

Test(crc32c, empty_and_null)
{
        cr_expect_eq(walu_crc32c(0, "", 0), 0u);
        cr_expect_eq(walu_crc32c(0x1234u, NULL, 0), 0x1234u);
        cr_expect_eq(walu_crc32c_sw(0xE3069283u, NULL, 0), 0xE3069283u);
        if (walu_crc32c_hw_available())
                cr_expect_eq(walu_crc32c_hw(7, NULL, 0), 7u);
}

static void check_chaining(crc_fn *fn, const char *impl)
{
        const char *s = "123456789";
        for (size_t cut = 0; cut <= 9; cut++) {
                uint32_t c = fn(fn(0, s, cut), s + cut, 9 - cut);
                cr_expect_eq(c, 0xE3069283u, "%s chained at %zu: 0x%08X", impl, cut, c);
        }
}

Test(crc32c, chaining)
{
        check_chaining(walu_crc32c_sw, "sw");
        check_chaining(walu_crc32c, "dispatch");
        if (walu_crc32c_hw_available())
                check_chaining(walu_crc32c_hw, "hw");
}

Test(crc32c, random_buffers_all_paths_agree)
{
        enum { MAX = 16384 + 64 };
        uint8_t *buf = malloc(MAX);
        cr_assert_not_null(buf);
        unsigned seed = 12345;
        for (size_t i = 0; i < MAX; i++)
                buf[i] = (uint8_t)rand_r(&seed);
        bool hw = walu_crc32c_hw_available();
        for (int iter = 0; iter < 2000; iter++) {
                size_t off = (size_t)rand_r(&seed) % 64;
                size_t len;
                /* Mostly short, some past the 3 KiB interleave threshold. */
                if (iter % 4 == 0)
                        len = (size_t)rand_r(&seed) % (MAX - 64);
                else
                        len = (size_t)rand_r(&seed) % 300;
                uint32_t init = iter % 3 ? (uint32_t)rand_r(&seed) : 0;
                uint32_t sw = walu_crc32c_sw(init, buf + off, len);
                uint32_t d = walu_crc32c(init, buf + off, len);
                cr_assert_eq(d, sw, "dispatch != sw at off %zu len %zu", off, len);
                if (hw) {
                        uint32_t h = walu_crc32c_hw(init, buf + off, len);
                        cr_assert_eq(h, sw, "hw != sw at off %zu len %zu", off, len);
                }
                /* Split anywhere: chaining must give the same value. */
                size_t cut = len ? (size_t)rand_r(&seed) % len : 0;
                uint32_t ch = walu_crc32c(walu_crc32c(init, buf + off, cut),
                                          buf + off + cut, len - cut);
                cr_assert_eq(ch, sw, "chained != whole at off %zu len %zu cut %zu", off,
                             len, cut);
        }
        free(buf);
}

Test(crc32c, interleave_boundaries)
{
        /* Lengths around multiples of the 3 x 1 KiB interleave block. */
        enum { MAX = 3 * 3072 + 16 };
        uint8_t *buf = malloc(MAX);
        cr_assert_not_null(buf);
        for (size_t i = 0; i < MAX; i++)
                buf[i] = (uint8_t)(i * 131 + 7);
        const size_t lens[] = { 3071, 3072, 3073, 3079, 3080, 6143, 6144, 6145, 9216, 9223 };
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                for (size_t off = 0; off < 9; off++) {
                        uint32_t sw = walu_crc32c_sw(0, buf + off, lens[i]);
                        cr_expect_eq(walu_crc32c(0, buf + off, lens[i]), sw,
                                     "len %zu off %zu", lens[i], off);
                }
        }
        free(buf);
}

/* Each criterion test runs in a fresh process, so here the tables and the
 * dispatch choice are built by whichever of these threads comes first. */
static void *crc_thread(void *arg)
{
        (void)arg;
        uint32_t bad = 0;
        for (int i = 0; i < 200; i++) {
                if (walu_crc32c(0, "123456789", 9) != 0xE3069283u)
                        bad++;
                if (walu_crc32c_sw(0, "123456789", 9) != 0xE3069283u)
                        bad++;
        }
        return (void *)(uintptr_t)bad;
}

Test(crc32c, first_use_from_many_threads)
{
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
                cr_assert_eq(pthread_create(&t[i], NULL, crc_thread, NULL), 0);
        for (int i = 0; i < 8; i++) {
                void *bad;
                cr_assert_eq(pthread_join(t[i], &bad), 0);
                cr_expect_eq((uintptr_t)bad, 0u, "thread %d saw wrong values", i);
        }
}

/* walu_crc32c_batch agrees with one-by-one walu_crc32c for every mix of
 * lengths (equal, unequal, empty second parts, odd offsets, past the
 * interleaving cut-off) and batch sizes that are and are not multiples of 3. */
Test(crc32c, batch_matches_one_by_one)
{
        size_t big = 16384;
        uint8_t *buf = malloc(big);
        cr_assert_not_null(buf);
        uint32_t x = 12345;
        for (size_t i = 0; i < big; i++) {
                x = x * 1103515245u + 12345u;
                buf[i] = (uint8_t)(x >> 16);
        }
        struct walu_crc32c_job jobs[7];
        uint32_t want[7];
        for (int round = 0; round < 3000; round++) {
                size_t n = 1 + (size_t)round % 7;
                for (size_t k = 0; k < n; k++) {
                        x = x * 1103515245u + 12345u;
                        size_t al = round % 5 == 0 ? 104 : (x >> 8) % (round % 11 == 0 ? 5000 : 300);
                        size_t bl = round % 4 == 0 ? 0 : (x >> 4) % 24;
                        size_t ao = (x >> 20) % 64, bo = 8000 + (x >> 12) % 64;
                        jobs[k] = (struct walu_crc32c_job){
                                .a = al ? buf + ao : NULL, .a_len = al,
                                .b = bl ? buf + bo : NULL, .b_len = bl,
                                .crc = round % 3 ? 0 : (uint32_t)x,
                        };
                        want[k] = walu_crc32c(walu_crc32c(jobs[k].crc, jobs[k].a, al),
                                              jobs[k].b, bl);
                }
                walu_crc32c_batch(jobs, n);
                for (size_t k = 0; k < n; k++)
                        cr_assert_eq(jobs[k].crc, want[k], "round %d job %zu", round, k);
        }
        walu_crc32c_batch(NULL, 0);
        free(buf);
}
