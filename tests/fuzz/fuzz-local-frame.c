/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-local-frame.c: fuzz target for the local backend's frame
 * decoder (impls/local/local-format.c, local_frame_decode) and its segment
 * header check.
 *
 * The input is read as a segment body: frames one after another, the way
 * recovery and scanners walk a segment.  It is copied into a buffer of
 * exactly its size so an over-read shows under ASan.  For every frame the
 * decoder accepts:
 *  - the reported size is a multiple of 8, at least the header, and covers
 *    header + envelope + payload; the envelope and payload pointers lie
 *    inside the buffer, envelope first;
 *  - sealing the same fields again (local_frame_seal) gives back the same
 *    header bytes: decode and encode agree, including the CRC;
 *  - the envelope decoder accepts or refuses the envelope without crashing
 *    (what a scanner does next).
 * The batch walk of the replay path (local_frames_scan) must accept exactly
 * the frames the decoder accepts one by one in LSN sequence from the first,
 * the same with their CRCs marked as checked before, and never more than
 * asked for.  So must the read-ahead helper's check (local_frames_check),
 * and its header-only walk exactly the frames local_frame_peek accepts in
 * LSN sequence.
 * A violation aborts, which the fuzzer reports.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "impls/local/local.h"
#include "utility/crc32c.h"
#include "utility/envelope.h"
#include "utility/walu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
        fprintf(stderr, "fuzz-local-frame: %s\n", what);
        abort();
}

static void check_frame(const uint8_t *buf, size_t len, const struct local_frame *f, int r)
{
        uint64_t body = (uint64_t)f->env_len + f->payload_len;
        if ((uint64_t)r != f->size || f->size % LOCAL_FRAME_ALIGN != 0 ||
            f->size < LOCAL_FRAME_HDR_SIZE + body)
                fail("frame size inconsistent");
        if (f->lsn == 0)
                fail("LSN 0 accepted");
        if (f->env != buf + LOCAL_FRAME_HDR_SIZE || f->payload != f->env + f->env_len ||
            LOCAL_FRAME_HDR_SIZE + body > len)
                fail("frame pointers outside the buffer");

        /* Re-seal into a fresh frame: same header bytes. */
        uint8_t *copy = malloc((size_t)f->size);
        if (!copy)
                fail("out of memory");
        memcpy(copy + LOCAL_FRAME_HDR_SIZE, f->env, (size_t)body);
        uint32_t crc = walu_crc32c(0, copy + LOCAL_FRAME_HDR_SIZE, (size_t)body);
        local_frame_seal(copy, f->lsn, f->env_len, f->payload_len, crc);
        if (memcmp(copy, buf, LOCAL_FRAME_HDR_SIZE) != 0)
                fail("sealing the decoded fields gives another header");
        struct local_frame g;
        if (local_frame_decode(copy, (size_t)f->size, &g) != r || g.lsn != f->lsn)
                fail("a sealed frame does not decode the same");
        free(copy);

        wal_msg *m = NULL;
        wal_error *err = NULL;
        if (walu_envelope_decode(f->env_len ? f->env : NULL, f->env_len, f->payload,
                                 f->payload_len, &m, &err) == 0) {
                size_t plen = 0;
                wal_msg_payload(m, &plen);
                if (plen != f->payload_len)
                        fail("payload length changed by the envelope decoder");
        }
        wal_msg_unref(m);
        wal_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *buf = calloc(1, size ? size : 1);
        if (!buf)
                return 0;
        if (size)
                memcpy(buf, data, size);

        uint64_t first;
        (void)local_seg_header_check(buf, size, &first);
        /* The previous-segment summary of a header page: a present one
         * must be self-consistent. */
        static struct local_prev prev;
        if (local_seg_header_prev(buf, size, &prev) == 1) {
                if (prev.last_lsn < prev.first_lsn || prev.n_index > LOCAL_PREV_INDEX_MAX)
                        fail("summary accepted with an impossible range");
                for (size_t i = 0; i < prev.n_index; i++)
                        if (prev.index[i].off >= prev.end ||
                            (i && prev.index[i].off <= prev.index[i - 1].off))
                                fail("summary index accepted out of order");
        }

        enum { MAXF = 1024 };
        static struct local_frame seq[MAXF], got[MAXF];
        size_t off = 0, n_seq = 0, seq_bytes = 0;
        bool in_seq = true;
        for (int frames = 0; frames < MAXF && off < size; frames++) {
                struct local_frame f;
                int r = local_frame_decode(buf + off, size - off, &f);
                if (r == 0 || r == -EAGAIN || r == -EBADMSG)
                        break;
                if (r < 0)
                        fail("unexpected error code");
                check_frame(buf + off, size - off, &f, r);
                if (in_seq && (n_seq == 0 || f.lsn == seq[0].lsn + n_seq)) {
                        seq[n_seq++] = f;
                        seq_bytes = off + (size_t)f.size;
                } else {
                        in_seq = false;
                }
                off += (size_t)f.size;
        }

        /* The batch walk, from the first frame's LSN (or any when there is
         * none), with nothing and then the accepted prefix already checked,
         * and with a limit below what is there. */
        uint64_t lsn = n_seq ? seq[0].lsn : (size >= 16 ? ((uint64_t)buf[15] | 1) : 1);
        for (int pass = 0; pass < 3; pass++) {
                size_t max = pass == 2 ? n_seq / 2 : MAXF;
                size_t used = 0;
                size_t n = local_frames_scan(buf, size, lsn, max, pass == 1 ? seq_bytes : 0,
                                             got, &used);
                size_t want = WALU_MIN(n_seq, max);
                if (n != want)
                        fail("batch walk and decoder disagree on the frame count");
                size_t at = 0;
                for (size_t i = 0; i < n; i++) {
                        if (got[i].lsn != seq[i].lsn || got[i].env != seq[i].env ||
                            got[i].env_len != seq[i].env_len ||
                            got[i].payload != seq[i].payload ||
                            got[i].payload_len != seq[i].payload_len ||
                            got[i].size != seq[i].size)
                                fail("batch walk and decoder disagree on a frame");
                        at += (size_t)got[i].size;
                }
                if (used != at)
                        fail("batch walk reports the wrong byte count");
                /* the helper's check: the same frames, the same bytes */
                size_t used2 = 0;
                if (pass != 1) {
                        size_t n2 = local_frames_check(buf, size, lsn, max, true, &used2);
                        if (n2 != want || used2 != at)
                                fail("the helper's check and the decoder disagree");
                }
        }

        /* The header-only walk against local_frame_peek in LSN sequence. */
        size_t n_peek = 0, peek_bytes = 0;
        for (size_t o = 0; n_peek < MAXF && o < size;) {
                struct local_frame f;
                if (local_frame_peek(buf + o, size - o, &f) <= 0 || f.lsn != lsn + n_peek)
                        break;
                n_peek++;
                o += (size_t)f.size;
                peek_bytes = o;
        }
        if (n_peek < n_seq)
                fail("peek refuses a frame the decoder accepts");
        for (int pass = 0; pass < 2; pass++) {
                size_t max = pass ? n_peek / 2 : MAXF;
                size_t used = 0, at = 0;
                size_t n = local_frames_check(buf, size, lsn, max, false, &used);
                if (n != WALU_MIN(n_peek, max))
                        fail("the header walk and peek disagree on the frame count");
                if (n == n_peek)
                        at = peek_bytes;
                else
                        for (size_t o = 0, i = 0; i < n; i++) {
                                struct local_frame f;
                                (void)local_frame_peek(buf + o, size - o, &f);
                                o += (size_t)f.size;
                                at = o;
                        }
                if (used != at)
                        fail("the header walk reports the wrong byte count");
        }
        free(buf);
        return 0;
}
