/* SPDX-License-Identifier: MIT */
/*
 * tests/local/test-faults-format.c: the local backend's frame codec and
 * segment header against damaged bytes (impls/local/local-format.c), as pure
 * functions over buffers.
 *
 *  - a sealed frame decodes to what was sealed, at its padded size;
 *  - every single-bit flip anywhere in a frame (header or body) is refused;
 *  - every truncation is "need more bytes" (-EAGAIN), never a frame;
 *  - an all-zero header is the end of data; LSN 0 with anything else set,
 *    an envelope longer than the body, a length over the cap and non-zero
 *    flags are refused;
 *  - segment headers: a bit flip is refused, another format version is
 *    -EPROTO; segment names round-trip and reject near misses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "impls/local/local.h"
#include "utility/crc32c.h"
#include "utility/walu.h"

/* Seal a frame of @lsn with @env_len envelope bytes and @pl_len payload
 * bytes of a fixed pattern into a new buffer; *size set. */
static uint8_t *make_frame(uint64_t lsn, uint32_t env_len, uint32_t pl_len, size_t *size)
{
        uint32_t body = env_len + pl_len;
        size_t n = (size_t)local_frame_size(body);
        uint8_t *f = calloc(1, n);
        cr_assert(f);
        for (uint32_t i = 0; i < body; i++)
                f[LOCAL_FRAME_HDR_SIZE + i] = (uint8_t)(i * 7 + 3);
        local_frame_seal(f, lsn, env_len, pl_len,
                         walu_crc32c(0, f + LOCAL_FRAME_HDR_SIZE, body));
        *size = n;
        return f;
}

Test(local_format, sealed_frame_decodes_to_its_fields)
{
        size_t n;
        uint8_t *f = make_frame(4711, 5, 13, &n);
        cr_assert_eq(n % LOCAL_FRAME_ALIGN, 0);
        struct local_frame d;
        cr_assert_eq(local_frame_decode(f, n, &d), (int)n);
        cr_assert_eq(d.lsn, 4711);
        cr_assert_eq(d.env_len, 5);
        cr_assert_eq(d.payload_len, 13);
        cr_assert_eq(d.env, f + LOCAL_FRAME_HDR_SIZE);
        cr_assert_eq(d.payload, f + LOCAL_FRAME_HDR_SIZE + 5);
        cr_assert_eq(d.size, n);
        /* Padding is zero. */
        for (size_t i = LOCAL_FRAME_HDR_SIZE + 18; i < n; i++)
                cr_assert_eq(f[i], 0);
        free(f);
}

Test(local_format, every_single_bit_flip_is_refused)
{
        size_t n;
        uint8_t *f = make_frame(99, 4, 60, &n);
        size_t used = LOCAL_FRAME_HDR_SIZE + 64;   /* padding is not covered */
        for (size_t byte = 0; byte < used; byte++) {
                for (int bit = 0; bit < 8; bit++) {
                        f[byte] ^= (uint8_t)(1u << bit);
                        struct local_frame d;
                        int r = local_frame_decode(f, n, &d);
                        /* A flip in the length may make the frame look
                         * longer than the buffer: "need more", never valid. */
                        cr_assert(r == -EBADMSG || r == -EAGAIN,
                                  "flip of bit %d in byte %zu decoded (%d)", bit, byte, r);
                        f[byte] ^= (uint8_t)(1u << bit);
                }
        }
        cr_assert_gt(local_frame_decode(f, n, NULL), 0);
        free(f);
}

Test(local_format, every_truncation_needs_more)
{
        size_t n;
        uint8_t *f = make_frame(7, 0, 100, &n);
        for (size_t len = 0; len < LOCAL_FRAME_HDR_SIZE + 100; len++) {
                uint8_t *copy = malloc(len ? len : 1);   /* exact size: ASan sees over-reads */
                memcpy(copy, f, len);
                cr_assert_eq(local_frame_decode(copy, len, NULL), -EAGAIN, "length %zu", len);
                free(copy);
        }
        free(f);
}

Test(local_format, zero_header_ends_and_impossible_headers_are_refused)
{
        uint8_t h[64] = { 0 };
        cr_assert_eq(local_frame_decode(h, sizeof(h), NULL), 0, "all zero: end of data");
        /* LSN 0 with a length. */
        walu_put_be32(h, 3);
        cr_assert_eq(local_frame_decode(h, sizeof(h), NULL), -EBADMSG);
        /* Envelope longer than the body. */
        memset(h, 0, sizeof(h));
        walu_put_be32(h, 4);
        walu_put_be32(h + 4, 5);
        walu_put_be64(h + 8, 1);
        cr_assert_eq(local_frame_decode(h, sizeof(h), NULL), -EBADMSG);
        /* Over the cap: refused before anything is read or allocated. */
        memset(h, 0, sizeof(h));
        walu_put_be32(h, LOCAL_FRAME_MAX_BODY + 1);
        walu_put_be64(h + 8, 1);
        cr_assert_eq(local_frame_decode(h, sizeof(h), NULL), -EBADMSG);
        /* Reserved flags. */
        size_t n;
        uint8_t *f = make_frame(1, 0, 8, &n);
        walu_put_be32(f + 16, 1);
        cr_assert_eq(local_frame_decode(f, n, NULL), -EBADMSG);
        free(f);
        cr_assert_eq(local_frame_decode(NULL, 100, NULL), -EAGAIN);
}

Test(local_format, segment_header_checks)
{
        uint8_t *h = calloc(1, LOCAL_SEG_HDR_SIZE);
        cr_assert(h);
        local_seg_header_encode(h, 12345, 64 << 20);
        uint64_t first = 0;
        cr_assert_eq(local_seg_header_check(h, LOCAL_SEG_HDR_SIZE, &first), 0);
        cr_assert_eq(first, 12345);
        for (size_t byte = 0; byte < 64; byte++) {
                h[byte] ^= 0x04;
                cr_assert_neq(local_seg_header_check(h, LOCAL_SEG_HDR_SIZE, NULL), 0,
                              "flip in byte %zu accepted", byte);
                h[byte] ^= 0x04;
        }
        cr_assert_eq(local_seg_header_check(h, 63, NULL), -EBADMSG);
        /* A well-formed header of another version: -EPROTO, not a guess. */
        walu_put_be32(h + 8, 2);
        walu_put_be32(h + 60, walu_crc32c(0, h, 60));
        cr_assert_eq(local_seg_header_check(h, LOCAL_SEG_HDR_SIZE, NULL), -EPROTO);
        free(h);
}

Test(local_format, previous_segment_summary)
{
        uint8_t *h = calloc(1, LOCAL_SEG_HDR_SIZE);
        cr_assert(h);
        static struct local_prev pv;
        local_seg_header_encode(h, 1001, 64 << 20);
        cr_assert_eq(local_seg_header_prev(h, LOCAL_SEG_HDR_SIZE, &pv), 0, "absent");

        /* A previous segment of LSNs 1..1000 with 600 index entries: the
         * summary keeps an evenly thinned, ascending subset. */
        struct local_seg *prev = local_seg_new("/nowhere", 1);
        cr_assert(prev);
        for (uint64_t i = 0; i < 600; i++)
                cr_assert_eq(local_seg_index_note(prev, 1 + i, LOCAL_SEG_HDR_SIZE +
                                                  i * LOCAL_INDEX_STRIDE), 0);
        prev->last_lsn = 1000;
        prev->end = LOCAL_SEG_HDR_SIZE + 600ull * LOCAL_INDEX_STRIDE;
        local_seg_header_add_prev(h, prev);
        cr_assert_eq(local_seg_header_check(h, LOCAL_SEG_HDR_SIZE, NULL), 0,
                     "the summary leaves the header itself alone");
        cr_assert_eq(local_seg_header_prev(h, LOCAL_SEG_HDR_SIZE, &pv), 1);
        cr_assert_eq(pv.first_lsn, 1);
        cr_assert_eq(pv.last_lsn, 1000);
        cr_assert_eq(pv.end, prev->end);
        cr_assert_eq(pv.n_index, LOCAL_PREV_INDEX_MAX);
        cr_assert_eq(pv.index[0].lsn, 1);
        cr_assert_eq(pv.index[0].off, LOCAL_SEG_HDR_SIZE);
        /* Every bit of what the summary's CRC covers is checked. */
        size_t len = 36 + 16 * (size_t)LOCAL_PREV_INDEX_MAX + 4;
        for (size_t byte = 0; byte < len; byte += 7) {
                h[LOCAL_PREV_OFF + byte] ^= 0x20;
                cr_assert_eq(local_seg_header_prev(h, LOCAL_SEG_HDR_SIZE, &pv), -EBADMSG,
                             "flip in summary byte %zu accepted", byte);
                h[LOCAL_PREV_OFF + byte] ^= 0x20;
        }
        /* A short read of the page sees no summary; an empty segment
         * leaves none. */
        cr_assert_eq(local_seg_header_prev(h, 100, &pv), 0);
        local_seg_header_encode(h, 1001, 64 << 20);
        prev->last_lsn = 0;
        local_seg_header_add_prev(h, prev);
        cr_assert_eq(local_seg_header_prev(h, LOCAL_SEG_HDR_SIZE, &pv), 0);
        local_seg_free(prev);
        free(h);
}

Test(local_format, segment_names)
{
        char name[LOCAL_SEG_NAME_LEN + 1];
        uint64_t v = 0;
        local_seg_name(name, 1);
        cr_assert_str_eq(name, "00000000000000000001.seg");
        cr_assert(local_seg_name_parse(name, &v));
        cr_assert_eq(v, 1);
        local_seg_name(name, UINT64_MAX);
        cr_assert(local_seg_name_parse(name, &v));
        cr_assert_eq(v, UINT64_MAX);
        const char *bad[] = {
                "00000000000000000000.seg",     /* LSN 0 */
                "0000000000000000001.seg",      /* 19 digits */
                "00000000000000000001.seg.cut", /* a repair side file */
                "0000000000000000000a.seg",
                "99999999999999999999.seg",     /* overflows 64 bits */
                "00000000000000000001.sex",
                "term",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert(!local_seg_name_parse(bad[i], &v), "%s accepted", bad[i]);
}
