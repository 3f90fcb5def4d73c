/* SPDX-License-Identifier: MIT */
/*
 * utility/crc32c.c: CRC-32C (Castagnoli), utility/crc32c.h.
 *
 * Two implementations with identical results:
 *
 *  - software: slicing-by-8 over eight 256-entry tables of the reflected
 *    polynomial 0x82F63B78, built once (pthread_once) on first use; eight
 *    input bytes per step, byte at a time for the head and tail;
 *  - hardware (x86-64 only): the SSE4.2 crc32 instruction, compiled with a
 *    per-function target attribute so the rest of the file (and the tree)
 *    stays baseline x86-64.  Buffers of 3 KiB and more are split into three
 *    interleaved streams so the three-cycle latency of crc32 is hidden; the
 *    three partial CRCs are joined by multiplying by x^(8*len) mod P, with
 *    per-length shift constants computed once alongside the tables.
 *
 * walu_crc32c() goes through an atomic function pointer that starts at a
 * resolver: the first call asks __builtin_cpu_supports("sse4.2"), stores the
 * chosen implementation, and every later call jumps straight to it.
 *
 * Convention: the value passed in and returned is the finished CRC (the
 * internal register is inverted on entry and exit), so a 0 starts a fresh
 * CRC and a previous result continues it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "utility/crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WALU_CRC32C_HAVE_X86 1
#include <nmmintrin.h>
#else
#define WALU_CRC32C_HAVE_X86 0
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
        for (uint32_t n = 0; n < 256; n++) {
                uint32_t c = n;
                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
                table[0][n] = c;
        }
        for (uint32_t n = 0; n < 256; n++) {
                uint32_t c = table[0][n];
                for (int t = 1; t < 8; t++) {
                        c = table[0][c & 0xff] ^ (c >> 8);
                        table[t][n] = c;
                }
        }
}

static inline uint64_t load_le64(const unsigned char *p)
{
        uint64_t v;
        memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
#endif
        return v;
}

uint32_t walu_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
        if (!buf || len == 0)
                return crc;
        pthread_once(&table_once, table_init);
        const unsigned char *p = buf;
        uint32_t c = ~crc;

        while (len && ((uintptr_t)p & 7)) {
                c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
                len--;
        }
        while (len >= 8) {
                uint64_t v = load_le64(p) ^ c;
                c = table[7][v & 0xff] ^
                    table[6][(v >> 8) & 0xff] ^
                    table[5][(v >> 16) & 0xff] ^
                    table[4][(v >> 24) & 0xff] ^
                    table[3][(v >> 32) & 0xff] ^
                    table[2][(v >> 40) & 0xff] ^
                    table[1][(v >> 48) & 0xff] ^
                    table[0][v >> 56];
                p += 8;
                len -= 8;
        }
        while (len--)
                c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        return ~c;
}

#if WALU_CRC32C_HAVE_X86

/*
 * Three-way interleaving.  The buffer is cut into three equal lanes of
 * LANE bytes; each lane runs its own crc32 chain.  Joining: for CRC
 * registers (not inverted) a, b over consecutive lanes A, B,
 * crc(A||B) = shift(a, |B|) ^ b, where shift(x, n) multiplies x by x^(8n)
 * modulo P.  shift is linear in x, so it is a 32x32 bit matrix; we keep it
 * as four 256-entry byte tables (lane_shift) for n = LANE.
 */
#define LANE 1024u
static uint32_t lane_shift[4][256];
static pthread_once_t lane_once = PTHREAD_ONCE_INIT;

/* x * x^(8n) mod P for a register value x, by running n zero bytes. */
static uint32_t shift_slow(uint32_t x, size_t n)
{
        pthread_once(&table_once, table_init);
        for (size_t i = 0; i < n; i++)
                x = table[0][x & 0xff] ^ (x >> 8);
        return x;
}

static void lane_init(void)
{
        /* Linearity: shift(x) is the XOR of shift(bit) for each set bit. */
        uint32_t basis[32];
        for (int b = 0; b < 32; b++)
                basis[b] = shift_slow(1u << b, LANE);
        for (int byte = 0; byte < 4; byte++) {
                for (uint32_t v = 0; v < 256; v++) {
                        uint32_t r = 0;
                        for (int b = 0; b < 8; b++)
                                if (v & (1u << b))
                                        r ^= basis[byte * 8 + b];
                        lane_shift[byte][v] = r;
                }
        }
}

static inline uint32_t lane_shift_apply(uint32_t x)
{
        return lane_shift[0][x & 0xff] ^ lane_shift[1][(x >> 8) & 0xff] ^
               lane_shift[2][(x >> 16) & 0xff] ^ lane_shift[3][x >> 24];
}

__attribute__((target("sse4.2")))
static uint32_t hw_run(uint32_t c, const unsigned char *p, size_t len)
{
        while (len && ((uintptr_t)p & 7)) {
                c = _mm_crc32_u8(c, *p++);
                len--;
        }
        uint64_t c64 = c;
        if (len >= 3 * LANE) {
                pthread_once(&lane_once, lane_init);
                while (len >= 3 * LANE) {
                        uint64_t c1 = 0, c2 = 0;
                        const unsigned char *p1 = p + LANE, *p2 = p + 2 * LANE;
                        for (size_t i = 0; i < LANE; i += 8) {
                                c64 = _mm_crc32_u64(c64, load_le64(p + i));
                                c1 = _mm_crc32_u64(c1, load_le64(p1 + i));
                                c2 = _mm_crc32_u64(c2, load_le64(p2 + i));
                        }
                        uint32_t r = lane_shift_apply((uint32_t)c64) ^ (uint32_t)c1;
                        r = lane_shift_apply(r) ^ (uint32_t)c2;
                        c64 = r;
                        p += 3 * LANE;
                        len -= 3 * LANE;
                }
        }
        while (len >= 8) {
                c64 = _mm_crc32_u64(c64, load_le64(p));
                p += 8;
                len -= 8;
        }
        c = (uint32_t)c64;
        while (len--)
                c = _mm_crc32_u8(c, *p++);
        return c;
}

uint32_t walu_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
        if (!buf || len == 0)
                return crc;
        return ~hw_run(~crc, buf, len);
}

/* The last @len < 8 bytes of a buffer: at most three instructions, no
 * call (the 20-byte frame headers the local backend checks end with 4). */
__attribute__((target("sse4.2")))
static inline uint64_t hw_tail(uint64_t c, const unsigned char *p, size_t len)
{
        uint32_t c32 = (uint32_t)c;
        if (len & 4) {
                uint32_t v;
                memcpy(&v, p, 4);
                c32 = _mm_crc32_u32(c32, v);   /* x86: little-endian */
                p += 4;
        }
        if (len & 2) {
                uint16_t v;
                memcpy(&v, p, 2);
                c32 = _mm_crc32_u16(c32, v);
                p += 2;
        }
        if (len & 1)
                c32 = _mm_crc32_u8(c32, *p);
        return c32;
}

/*
 * Three jobs side by side: the common whole-word prefix of their first
 * buffers runs in three interleaved chains, each finishes its first buffer
 * alone (short tails inline), then the same for the second buffers.
 * Registers stay inverted throughout, as in hw_run.
 */
__attribute__((target("sse4.2")))
static void hw_batch3(struct walu_crc32c_job *j)
{
        uint64_t c0 = ~j[0].crc, c1 = ~j[1].crc, c2 = ~j[2].crc;
        for (int part = 0; part < 2; part++) {
                const unsigned char *p0 = part ? j[0].b : j[0].a;
                const unsigned char *p1 = part ? j[1].b : j[1].a;
                const unsigned char *p2 = part ? j[2].b : j[2].a;
                size_t n0 = part ? j[0].b_len : j[0].a_len;
                size_t n1 = part ? j[1].b_len : j[1].a_len;
                size_t n2 = part ? j[2].b_len : j[2].a_len;
                size_t common = n0 < n1 ? n0 : n1;
                common = (common < n2 ? common : n2) & ~(size_t)7;
                for (size_t i = 0; i < common; i += 8) {
                        c0 = _mm_crc32_u64(c0, load_le64(p0 + i));
                        c1 = _mm_crc32_u64(c1, load_le64(p1 + i));
                        c2 = _mm_crc32_u64(c2, load_le64(p2 + i));
                }
                if (n0 - common >= 8)
                        c0 = hw_run((uint32_t)c0, p0 + common, n0 - common);
                else if (n0 > common)
                        c0 = hw_tail(c0, p0 + common, n0 - common);
                if (n1 - common >= 8)
                        c1 = hw_run((uint32_t)c1, p1 + common, n1 - common);
                else if (n1 > common)
                        c1 = hw_tail(c1, p1 + common, n1 - common);
                if (n2 - common >= 8)
                        c2 = hw_run((uint32_t)c2, p2 + common, n2 - common);
                else if (n2 > common)
                        c2 = hw_tail(c2, p2 + common, n2 - common);
        }
        j[0].crc = ~(uint32_t)c0;
        j[1].crc = ~(uint32_t)c1;
        j[2].crc = ~(uint32_t)c2;
}

bool walu_crc32c_hw_available(void)
{
        return __builtin_cpu_supports("sse4.2");
}

#else /* !WALU_CRC32C_HAVE_X86 */

/* No instruction path on this architecture: the table is the only one.
 * Callers are told so by walu_crc32c_hw_available(); should one call this
 * anyway it still returns the right value. */
uint32_t walu_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
        return walu_crc32c_sw(crc, buf, len);
}

bool walu_crc32c_hw_available(void)
{
        return false;
}

#endif

typedef uint32_t crc_fn(uint32_t crc, const void *buf, size_t len);

static uint32_t resolve(uint32_t crc, const void *buf, size_t len);
static _Atomic(crc_fn *) crc_impl = resolve;

static uint32_t resolve(uint32_t crc, const void *buf, size_t len)
{
        crc_fn *fn = walu_crc32c_hw_available() ? walu_crc32c_hw : walu_crc32c_sw;
        atomic_store_explicit(&crc_impl, fn, memory_order_relaxed);
        return fn(crc, buf, len);
}

uint32_t walu_crc32c(uint32_t crc, const void *buf, size_t len)
{
        return atomic_load_explicit(&crc_impl, memory_order_relaxed)(crc, buf, len);
}

/* Past this, one buffer alone already runs three interleaved lanes. */
#define BATCH_MAX_LEN (3 * 1024)

static void batch_one(struct walu_crc32c_job *j)
{
        j->crc = walu_crc32c(walu_crc32c(j->crc, j->a, j->a_len), j->b, j->b_len);
}

void walu_crc32c_batch(struct walu_crc32c_job *jobs, size_t n)
{
        size_t i = 0;
#if WALU_CRC32C_HAVE_X86
        if (n >= 3 && atomic_load_explicit(&crc_impl, memory_order_relaxed) != walu_crc32c_sw &&
            walu_crc32c_hw_available()) {
                for (; i + 3 <= n; i += 3) {
                        struct walu_crc32c_job *j = jobs + i;
                        bool small = true;
                        for (int k = 0; k < 3; k++)
                                if (j[k].a_len > BATCH_MAX_LEN || j[k].b_len > BATCH_MAX_LEN ||
                                    (!j[k].a && j[k].a_len) || (!j[k].b && j[k].b_len))
                                        small = false;
                        if (small) {
                                hw_batch3(j);
                        } else {
                                for (int k = 0; k < 3; k++)
                                        batch_one(&j[k]);
                        }
                }
        }
#endif
        for (; i < n; i++)
                batch_one(&jobs[i]);
}
