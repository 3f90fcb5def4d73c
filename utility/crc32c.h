/* SPDX-License-Identifier: MIT */
/*
 * utility/crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * walu_crc32c() picks the SSE4.2 crc32 instruction when the CPU has it and a
 * portable slicing-by-8 table otherwise; both produce identical values.
 * Check value: walu_crc32c(0, "123456789", 9) == 0xE3069283.
 * Chaining: walu_crc32c(walu_crc32c(0, a, n), b, m) == crc of a||b.
 */
#ifndef WALU_CRC32C_H
#define WALU_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Thread-safe; @crc is the value of the data before @buf (0 to start). */
uint32_t walu_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, for tests and benchmarks. */
uint32_t walu_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* Only call when walu_crc32c_hw_available(). */
uint32_t walu_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool walu_crc32c_hw_available(void);

/*
 * One CRC of a batch: the CRC of @a (@a_len bytes) followed by @b (@b_len
 * bytes; may be 0), continuing @crc.  walu_crc32c_batch() replaces @crc of
 * each job by the result.
 */
struct walu_crc32c_job {
        const void *a;
        size_t a_len;
        const void *b;
        size_t b_len;
        uint32_t crc;
};

/*
 * The CRCs of @n independent jobs, as walu_crc32c would compute them one by
 * one.  Short buffers (records of a few hundred bytes) are where this pays:
 * one CRC's chain of crc32 instructions is bound by their latency, so
 * several jobs are run side by side, three at a time.  Thread-safe.
 */
void walu_crc32c_batch(struct walu_crc32c_job *jobs, size_t n);

#endif /* WALU_CRC32C_H */
