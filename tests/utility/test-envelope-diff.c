/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/test-envelope-diff.c: the hand-written envelope decoder
 * accepts and refuses exactly what the protobuf-c based reference does, with
 * the same error and the same message (envelope-diff.h).
 *
 * Three sources of inputs: wire-format corner cases written out by hand,
 * structured random envelopes (random field numbers, wire types, varint
 * lengths, nested properties), and deterministic mutations of the envelope
 * fuzz corpus.  Each test also checks that both outcomes (decoded and
 * refused) occur, so an input generator that only ever produces one kind
 * cannot pass unnoticed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "envelope-diff.h"

#ifndef ENVELOPE_CORPUS
#error "ENVELOPE_CORPUS (the envelope fuzz corpus folder) must be defined"
#endif

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
        uint64_t x = rng_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return rng_state = x;
}

static void check_env(const uint8_t *env, size_t len, size_t *ok, size_t *bad)
{
        int decoded = 0;
        uint8_t *copy = NULL;
        if (env) {
                copy = malloc(len ? len : 1);
                cr_assert_not_null(copy);
                if (len)
                        memcpy(copy, env, len);
        }
        const char *d = ed_compare(copy, len, "pl", 2, &decoded);
        if (d) {
                char hex[3 * 64 + 1] = "";
                for (size_t i = 0; i < len && i < 64; i++)
                        snprintf(hex + 3 * i, 4, "%02x ", env[i]);
                cr_assert_fail("decoders disagree (%s) on %zu bytes: %s", d, len, hex);
        }
        free(copy);
        (decoded ? (*ok)++ : (*bad)++);
}

#define ENV(...) { (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }) }

Test(envelope_diff, wire_corner_cases)
{
        const struct {
                const uint8_t *b;
                size_t n;
        } cases[] = {
                ENV(0x08, 0x01, 0x10, 0x01),                    /* minimal data */
                ENV(0x08, 0x02, 0x10, 0x01),                    /* version 2 */
                ENV(0x08, 0x01, 0x10, 0x07),                    /* type 7 */
                ENV(0x08, 0x01, 0x10, 0x00),                    /* type 0 */
                ENV(0x10, 0x01),                                /* no version */
                ENV(0x08, 0x81, 0x80, 0x80, 0x80, 0x10, 0x10, 0x01), /* uint32 keeps low bits */
                ENV(0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                    0x10, 0x01),                                /* 10-byte varint */
                ENV(0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                    0x10, 0x01),                                /* 11-byte varint */
                ENV(0x08, 0x01, 0x10, 0x01, 0x00, 0x00),        /* field 0, varint */
                ENV(0x08, 0x01, 0x10, 0x01, 0x02, 0x00),        /* field 0, empty bytes */
                ENV(0x08, 0x01, 0x10, 0x01, 0x80, 0x00, 0x00),  /* field 0 in two bytes */
                ENV(0x08, 0x01, 0x10, 0x01, 0x82, 0x00, 0x00),  /* ... length-delimited */
                ENV(0x08, 0x01, 0x10, 0x01, 0x03),              /* group start */
                ENV(0x08, 0x01, 0x10, 0x01, 0x0c),              /* group end, field 1 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x66, 0x00),        /* wire type 6 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x67, 0x00),        /* wire type 7 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x61, 1, 2, 3, 4, 5, 6, 7, 8), /* field 12 fixed64 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x61, 1, 2, 3, 4, 5, 6, 7), /* short fixed64 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x65, 1, 2, 3, 4),  /* field 12 fixed32 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x65, 1, 2, 3),     /* short fixed32 */
                ENV(0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x01),  /* version as fixed64 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x38, 0x01, 0x40, 0x05, 0x48, 0x06), /* has_lc */
                ENV(0x08, 0x01, 0x10, 0x01, 0x38, 0x80, 0x00, 0x40, 0x05), /* bool 0x80 0x00 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x38, 0x02),        /* bool 2 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x39, 0, 0, 0, 0, 0, 0, 0, 0x80), /* bool fixed64 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x39, 0, 0, 0, 0, 0, 0, 1, 0), /* bool fixed64 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x3d, 0, 0, 0, 0),  /* bool fixed32 zero */
                ENV(0x08, 0x01, 0x10, 0x01, 0x3a, 0x00),        /* bool as empty bytes */
                ENV(0x08, 0x01, 0x10, 0x01, 0x3a, 0x01, 0x00),  /* bool as bytes "\0" */
                ENV(0x08, 0x01, 0x10, 0x01, 0x3b),              /* bool as group */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0x02, 'v', 'c'), /* vchannel */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0x02, 'v', 0x00), /* vchannel with NUL */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0x02, 'v', 'c', 0x22, 0x00), /* cleared */
                ENV(0x08, 0x01, 0x10, 0x01, 0x20, 0x01),        /* vchannel as varint */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0x03, 'v', 'c'), /* length past end */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0xff, 0xff, 0xff, 0xff, 0x0f), /* 2^32-1 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0xfc, 0xff, 0xff, 0xff, 0x0f, 0x00),
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0xfb, 0xff, 0xff, 0xff, 0x0f, 0x00),
                ENV(0x08, 0x01, 0x10, 0x01, 0x22, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00),
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'v'),
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x12, 0x01, 'v'), /* no key */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x0a, 0x01, 'k'), /* no value */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x0a, 0x01, 'k',
                    0x1a, 0x03, 0x0a, 0x01, 'k'),               /* duplicate key */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x06, 0x0a, 0x01, 'k', 0x0a, 0x01, 'j'),
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x05, 0x0a, 0x01, 'k', 0x10, 0x01), /* bad wt */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x05, 0x0a, 0x01, 'k', 0x18, 0x01), /* unknown */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x04, 0x0a, 0x01, 'k', 0x03), /* group */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x0a, 0x01, 0x00), /* NUL key */
                ENV(0x08, 0x01, 0x10, 0x01, 0x18, 0x01),        /* properties as varint */
                ENV(0x08, 0x01, 0x10, 0x01, 0x1a, 0x00),        /* empty property */
                ENV(0x1a, 0x00, 0x08, 0x01, 0x10, 0x09),        /* bad type after prop */
                ENV(0x08, 0x01, 0x10, 0x01, 0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0x01),                          /* term -1 */
                ENV(0x08, 0x01, 0x10, 0x01, 0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0x7f),                          /* 10th byte high bits */
                ENV(0x88, 0x80, 0x80, 0x80, 0x00, 0x01, 0x10, 0x01), /* 5-byte tag: field 1 */
                ENV(0x88, 0x80, 0x80, 0x80, 0x10, 0x01, 0x08, 0x01, 0x10, 0x01), /* 2^32+1 */
                ENV(0x88, 0x80, 0x80, 0x80, 0x08, 0x01, 0x08, 0x01, 0x10, 0x01), /* 2^31+1 */
                ENV(0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01),  /* 6-byte tag */
                ENV(0x08, 0x01, 0x10, 0x01, 0x88),              /* truncated tag */
                ENV(0x08, 0x01, 0x10, 0x01, 0x28),              /* tag, no value */
                ENV(0x08, 0x01, 0x10, 0x01, 0x58, 0x80, 0x80, 0x80, 0x80, 0x10), /* keepalive */
                ENV(0x08, 0x01, 0x10, 0x01, 0x50, 0x05, 0x50, 0x00), /* txn id reset */
        };
        size_t ok = 0, bad = 0;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                check_env(cases[i].b, cases[i].n, &ok, &bad);
        check_env(NULL, 0, &ok, &bad);
        cr_assert_gt(ok, 10);
        cr_assert_gt(bad, 10);
}

/* Append a varint of @v using at least @min_len bytes (padding with 0x80). */
static size_t put_varint_padded(uint8_t *p, uint64_t v, size_t min_len)
{
        size_t n = 0;
        while (v >= 0x80 || n + 1 < min_len) {
                p[n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (uint8_t)v;
        return n;
}

static uint64_t rnd_value(void)
{
        switch (rnd() % 6) {
        case 0: return 0;
        case 1: return 1;
        case 2: return rnd() % 8;
        case 3: return rnd() & 0xffffffffu;
        case 4: return rnd();
        default: return rnd() % 300;
        }
}

/* A random field list of up to @max bytes into @p; @depth 0 = envelope. */
static size_t rnd_fields(uint8_t *p, size_t max, int depth)
{
        size_t n = 0;
        if (depth == 0 && rnd() % 4) {
                p[n++] = 0x08;
                p[n++] = rnd() % 8 ? 1 : (uint8_t)(rnd() % 4);
                p[n++] = 0x10;
                p[n++] = (uint8_t)(rnd() % 8);
        }
        size_t nf = rnd() % 6;
        for (size_t f = 0; f < nf && n + 40 < max; f++) {
                uint32_t num = depth ? (uint32_t)(rnd() % 4) : (uint32_t)(rnd() % 14);
                if (rnd() % 16 == 0)
                        num = (uint32_t)rnd();
                unsigned wire = rnd() % 3 ? (rnd() % 2 ? 0 : 2) : (unsigned)(rnd() % 8);
                if (depth == 0 && num == 3 && rnd() % 3)
                        wire = 2;
                n += put_varint_padded(p + n, (uint64_t)num << 3 | wire,
                                       rnd() % 8 ? 1 : 1 + rnd() % 5);
                switch (wire) {
                case 0:
                        n += put_varint_padded(p + n, rnd_value(),
                                               rnd() % 8 ? 1 : 1 + rnd() % 10);
                        break;
                case 1:
                case 5:
                        for (unsigned i = 0; i < (wire == 1 ? 8u : 4u); i++)
                                p[n++] = (uint8_t)rnd();
                        break;
                case 2: {
                        uint8_t sub[64];
                        size_t sl;
                        if (depth == 0 && num == 3) {
                                sl = rnd_fields(sub, sizeof(sub), 1);
                        } else {
                                sl = rnd() % 6;
                                for (size_t i = 0; i < sl; i++)
                                        sub[i] = rnd() % 10 ? (uint8_t)('a' + rnd() % 3) : 0;
                        }
                        size_t declared = rnd() % 16 ? sl : sl + rnd() % 3 - 1;
                        n += put_varint_padded(p + n, declared, rnd() % 8 ? 1 : 1 + rnd() % 5);
                        if (n + sl > max)
                                sl = max - n;
                        memcpy(p + n, sub, sl);
                        n += sl;
                        break;
                }
                default:
                        break;
                }
        }
        if (n > max)
                n = max;
        return n;
}

/* Every 4-byte envelope whose tags are the encoder's (version, type) or a
 * neighbour of them: the inline reader of the commonest envelope
 * (walu_envelope_view_inline) and both decoders agree on each (ed_compare
 * checks all three readers). */
Test(envelope_diff, four_byte_envelopes)
{
        static const uint8_t tags0[] = { 0x08, 0x09, 0x10, 0x00 };
        static const uint8_t tags2[] = { 0x10, 0x11, 0x08, 0x18 };
        size_t ok = 0;
        for (size_t t0 = 0; t0 < sizeof(tags0); t0++)
                for (size_t t2 = 0; t2 < sizeof(tags2); t2++)
                        for (unsigned b1 = 0; b1 < 256; b1 += t0 || t2 ? 17 : 1)
                                for (unsigned b3 = 0; b3 < 256; b3++) {
                                        uint8_t env[4] = { tags0[t0], (uint8_t)b1, tags2[t2],
                                                           (uint8_t)b3 };
                                        int good;
                                        const char *d = ed_compare(env, 4, "p", 1, &good);
                                        cr_assert_null(d, "%02x %02x %02x %02x: %s", env[0],
                                                       env[1], env[2], env[3], d);
                                        ok += good;
                                }
        /* version 1, types 1..WAL_MSG_TYPE_MAX with the encoder's tags */
        cr_assert_geq(ok, (size_t)WAL_MSG_TYPE_MAX);
}

/* What the adaptor stamps on every message (type, time tick, term, last
 * confirmed; walu_envelope_view_fast's second shape), with varints of every
 * length around the 8-byte load and its tail path: the fast path reads each
 * one the encoder writes with values of up to 9 varint bytes (this fails if
 * it stops doing so), and each one-byte change and truncation of them is
 * read alike by all the readers: in particular the fast path never accepts
 * what walu_envelope_view() refuses (ed_compare checks it). */
Test(envelope_diff, adaptor_envelopes)
{
        static const uint64_t vals[] = { 0, 1, 127, 128, 16383, 16384, UINT64_C(1) << 35,
                                         (UINT64_C(1) << 56) - 1, UINT64_C(1) << 56,
                                         (UINT64_C(1) << 63) - 1, UINT64_MAX };
        size_t n_vals = sizeof(vals) / sizeof(vals[0]);
        size_t fast = 0, stamp = 0, mutated = 0, ok = 0, bad = 0;
        for (size_t i = 0; i < 300; i++) {
                uint64_t tick = i < 40 ? (UINT64_C(1763766000000) << 18) + i
                                       : rnd() >> (rnd() % 64);
                int64_t term = (int64_t)(i % 5 == 4 ? vals[rnd() % n_vals] : 1 + i % 3);
                uint64_t lc_hi = i % 3 == 2 ? vals[rnd() % n_vals] : 0;
                uint64_t lc_lo = i < n_vals ? vals[i] : rnd() >> (rnd() % 64);
                wal_msg *m = NULL;
                enum wal_msg_type type = (enum wal_msg_type)(1 + i % WAL_MSG_TYPE_MAX);
                cr_assert_eq(wal_msg_new(type, "p", 1, &m), 0);
                wal_msg_set_time_tick(m, tick);
                wal_msg_set_term(m, term);
                wal_msg_set_last_confirmed(m, WAL_MSGID(lc_hi, lc_lo));
                if (i % 7 == 6)
                        wal_msg_set_txn(m, rnd(), (uint32_t)rnd());
                uint8_t env[96];
                int n = walu_envelope_encode(m, env, sizeof(env));
                cr_assert_gt(n, 4);
                wal_msg_unref(m);
                /* every value of at most 9 varint bytes: < 2^63 */
                bool short_varints = tick < (UINT64_C(1) << 63) && term >= 0 &&
                                     (uint64_t)term < (UINT64_C(1) << 63) &&
                                     lc_hi < (UINT64_C(1) << 63) && lc_lo < (UINT64_C(1) << 63);
                struct wal_msg_view v;
                bool f = walu_envelope_view_fast(env, (size_t)n, &v);
                if (short_varints && i % 7 != 6) {
                        cr_assert(f, "fast path refuses the adaptor envelope %zu (%d bytes)",
                                  i, n);
                        fast++;
                }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* a clock's tick (9 varint bytes), a one-byte term, last
                 * confirmed (0, lo < 2^56): the fixed-offset path reads it */
                if (i < 40 && lc_hi == 0 && term >= 1 && term < 128 && i % 7 != 6 &&
                    lc_lo < (UINT64_C(1) << 56)) {
                        struct wal_msg_view vs;
                        cr_assert(walu_envelope_view_stamp_(env, (size_t)n, &vs),
                                  "stamp path refuses the adaptor envelope %zu (%d bytes)", i,
                                  n);
                        cr_assert_eq(vs.time_tick, tick);
                        cr_assert_eq(vs.term, term);
                        cr_assert(wal_msgid_eq(vs.last_confirmed, WAL_MSGID(0, lc_lo)));
                        stamp++;
                }
#endif
                check_env(env, (size_t)n, &ok, &bad);
                for (int len = 0; len < n; len++)
                        check_env(env, (size_t)len, &ok, &bad);
                if (i % 10)
                        continue;
                uint8_t mut[96];
                for (int pos = 0; pos < n; pos++)
                        for (unsigned b = 0; b < 256; b++) {
                                memcpy(mut, env, (size_t)n);
                                mut[pos] = (uint8_t)b;
                                check_env(mut, (size_t)n, &ok, &bad);
                                mutated++;
                        }
        }
        cr_log_info("adaptor envelopes: %zu read by the fast path, %zu mutations, "
                    "%zu decoded, %zu refused", fast, mutated, ok, bad);
        cr_assert_gt(fast, 150);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        cr_assert_gt(stamp, 10);
#endif
        cr_assert_gt(bad, 1000);
}

Test(envelope_diff, random_envelopes)
{
        uint8_t buf[512];
        size_t ok = 0, bad = 0;
        for (int i = 0; i < 200000; i++) {
                size_t n = rnd_fields(buf, sizeof(buf), 0);
                if (n && rnd() % 8 == 0)
                        n -= 1 + rnd() % n;             /* truncate */
                check_env(buf, n, &ok, &bad);
        }
        cr_log_info("random envelopes: %zu decoded, %zu refused", ok, bad);
        cr_assert_gt(ok, 1000);
        cr_assert_gt(bad, 1000);
}

static uint8_t *read_all(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        uint8_t *b = NULL;
        size_t n = 0, cap = 0;
        for (;;) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *nb = realloc(b, cap);
                        cr_assert_not_null(nb);
                        b = nb;
                }
                size_t r = fread(b + n, 1, cap - n, f);
                n += r;
                if (r == 0)
                        break;
        }
        fclose(f);
        *len = n;
        return b;
}

Test(envelope_diff, corpus_and_mutations)
{
        DIR *d = opendir(ENVELOPE_CORPUS);
        cr_assert_not_null(d, "corpus folder %s", ENVELOPE_CORPUS);
        struct dirent *de;
        size_t files = 0, ok = 0, bad = 0;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", ENVELOPE_CORPUS, de->d_name);
                size_t len;
                uint8_t *in = read_all(path, &len);
                cr_assert_not_null(in, "reading %s", path);
                files++;
                int decoded;
                const char *diff = ed_check_input(in, len, &decoded);
                cr_assert_null(diff, "%s: %s", de->d_name, diff);
                (decoded ? ok++ : bad++);
                uint8_t *m = malloc(len + 8);
                cr_assert_not_null(m);
                for (int k = 0; k < 300 && len > 1; k++) {
                        memcpy(m, in, len);
                        size_t ml = len;
                        int edits = 1 + (int)(rnd() % 3);
                        for (int e = 0; e < edits; e++) {
                                size_t at = 1 + rnd() % (ml - 1);
                                switch (rnd() % 4) {
                                case 0: m[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
                                case 1: m[at] = (uint8_t)rnd(); break;
                                case 2: ml = at + 1; break;
                                default: m[at] = (uint8_t)(rnd() % 3 ? 0x80 : 0xff); break;
                                }
                        }
                        diff = ed_check_input(m, ml, &decoded);
                        cr_assert_null(diff, "%s, mutation %d: %s", de->d_name, k, diff);
                        (decoded ? ok++ : bad++);
                }
                free(m);
                free(in);
        }
        closedir(d);
        cr_log_info("corpus: %zu files; %zu inputs decoded, %zu refused", files, ok, bad);
        cr_assert_gt(files, 10);
        cr_assert_gt(ok, 100);
        cr_assert_gt(bad, 100);
}
