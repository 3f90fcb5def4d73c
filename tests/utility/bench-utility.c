/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/bench-utility.c: micro-benchmarks of utility/ (a meson
 * benchmark, never a pass/fail test).
 *
 * Envelope encode and decode of a typical record (40-byte payload, two
 * properties, vchannel, time tick, term, last-confirmed ID), and CRC-32C
 * throughput of the SSE4.2 and table paths on 4 KiB and 1 MiB buffers.
 * Prints one line per figure.  Run: meson test -C BUILD --benchmark
 * --suite utility -v, or the executable directly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <wal/wal-message.h>
#include "utility/crc32c.h"
#include "utility/envelope.h"
#include "utility/walu.h"

static double ns_per(uint64_t t0, uint64_t t1, long n)
{
        return (double)(t1 - t0) / (double)n;
}

static void bench_crc(const char *name, uint32_t (*fn)(uint32_t, const void *, size_t),
                      const uint8_t *buf, size_t len, long iters)
{
        uint32_t c = 0;
        uint64_t t0 = walu_monotonic_ns();
        for (long i = 0; i < iters; i++)
                c = fn(c, buf, len);
        uint64_t t1 = walu_monotonic_ns();
        printf("crc32c %-3s %7zu B: %6.2f GB/s (crc %08x)\n", name, len,
               (double)len * (double)iters / (double)(t1 - t0), c);
}

int main(void)
{
        wal_msg *m = NULL;
        if (wal_msg_new(WAL_MSG_DATA, "0123456789012345678901234567890123456789", 40, &m) < 0)
                return 1;
        wal_msg_set_prop(m, "a", "b");
        wal_msg_set_prop(m, "trace", "abcdef");
        wal_msg_set_vchannel(m, "vch-1");
        wal_msg_set_time_tick(m, UINT64_C(1) << 50);
        wal_msg_set_term(m, 3);
        wal_msg_set_last_confirmed(m, WAL_MSGID(0, 12345));

        uint8_t env[256];
        const long n_enc = 2000000, n_dec = 500000;
        long total = 0;
        uint64_t t0 = walu_monotonic_ns();
        for (long i = 0; i < n_enc; i++)
                total += walu_envelope_encode(m, env, sizeof(env));
        uint64_t t1 = walu_monotonic_ns();
        int n = walu_envelope_encode(m, env, sizeof(env));
        printf("envelope encode (%d B): %.1f ns/op\n", n, ns_per(t0, t1, n_enc));
        if (total != (long)n * n_enc)
                return 1;

        t0 = walu_monotonic_ns();
        for (long i = 0; i < n_dec; i++) {
                wal_msg *d = NULL;
                if (walu_envelope_decode(env, (size_t)n, "x", 1, &d, NULL) < 0)
                        return 1;
                wal_msg_unref(d);
        }
        t1 = walu_monotonic_ns();
        printf("envelope decode (%d B): %.1f ns/op\n", n, ns_per(t0, t1, n_dec));

        /* The protobuf-c reference decoder, for comparison. */
        t0 = walu_monotonic_ns();
        for (long i = 0; i < n_dec; i++) {
                wal_msg *d = NULL;
                if (walu_envelope_decode_protobuf(env, (size_t)n, "x", 1, &d, NULL) < 0)
                        return 1;
                wal_msg_unref(d);
        }
        t1 = walu_monotonic_ns();
        printf("envelope decode, protobuf-c reference (%d B): %.1f ns/op\n", n,
               ns_per(t0, t1, n_dec));

        /* A plain data record (version and type only): what replay decodes
         * most often. */
        static const uint8_t plain[] = { 0x08, 0x01, 0x10, 0x01 };
        t0 = walu_monotonic_ns();
        for (long i = 0; i < n_dec; i++) {
                wal_msg *d = NULL;
                if (walu_envelope_decode(plain, sizeof(plain), "x", 1, &d, NULL) < 0)
                        return 1;
                wal_msg_unref(d);
        }
        t1 = walu_monotonic_ns();
        printf("envelope decode (4 B, no properties): %.1f ns/op\n", ns_per(t0, t1, n_dec));
        t0 = walu_monotonic_ns();
        for (long i = 0; i < n_dec; i++) {
                wal_msg *d = NULL;
                if (walu_envelope_decode_protobuf(plain, sizeof(plain), "x", 1, &d, NULL) < 0)
                        return 1;
                wal_msg_unref(d);
        }
        t1 = walu_monotonic_ns();
        printf("envelope decode, protobuf-c reference (4 B): %.1f ns/op\n",
               ns_per(t0, t1, n_dec));
        wal_msg_unref(m);

        size_t big = 1 << 20;
        uint8_t *buf = malloc(big);
        if (!buf)
                return 1;
        for (size_t i = 0; i < big; i++)
                buf[i] = (uint8_t)(i * 31);
        if (walu_crc32c_hw_available()) {
                bench_crc("hw", walu_crc32c_hw, buf, 4096, 500000);
                bench_crc("hw", walu_crc32c_hw, buf, big, 2000);
        } else {
                printf("crc32c hw: not available on this CPU\n");
        }
        bench_crc("sw", walu_crc32c_sw, buf, 4096, 50000);
        bench_crc("sw", walu_crc32c_sw, buf, big, 200);
        free(buf);
        return 0;
}
