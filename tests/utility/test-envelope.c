/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/test-envelope.c: utility/envelope.c.
 *
 * Round trips of every envelope field through encode and decode, many
 * properties (past the encoder's stack arrays), empty and binary payloads,
 * foreign records, and hostile input: every prefix of a valid envelope,
 * random garbage, hand-made wire data with a bad version, type, empty or
 * duplicate key, and the size cap.  Decoding hostile input must either fail
 * with -EBADMSG and a message or yield a valid message; never crash (these
 * suites also run under ASan/UBSan).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "utility/envelope.h"

static wal_msg *make_full(const void *payload, size_t len)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_TXN_COMMIT, payload, len, &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, "k1", "v1"), 0);
        cr_assert_eq(wal_msg_set_prop(m, "empty-value", ""), 0);
        cr_assert_eq(wal_msg_set_prop(m, "utf8-ключ", "значение"), 0);
        cr_assert_eq(wal_msg_set_vchannel(m, "vch-7"), 0);
        cr_assert_eq(wal_msg_set_time_tick(m, (UINT64_C(1700000000000) << 18) | 5), 0);
        cr_assert_eq(wal_msg_set_term(m, -42), 0);
        cr_assert_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(UINT64_MAX - 1, 3)), 0);
        cr_assert_eq(wal_msg_set_txn(m, UINT64_MAX, UINT32_MAX), 0);
        return m;
}

/* Encode @m, decode it with @payload, return the decoded message. */
static wal_msg *round_trip(const wal_msg *m)
{
        size_t sz = walu_envelope_size(m);
        cr_assert_gt(sz, 0);
        uint8_t *buf = malloc(sz);
        cr_assert_not_null(buf);
        int n = walu_envelope_encode(m, buf, sz);
        cr_assert_eq(n, (int)sz, "encode returned %d, size said %zu", n, sz);
        size_t plen;
        const void *p = wal_msg_payload(m, &plen);
        wal_msg *d = NULL;
        wal_error *err = NULL;
        int r = walu_envelope_decode(buf, sz, p, plen, &d, &err);
        cr_assert_eq(r, 0, "decode: %s", wal_error_message(err));
        cr_assert_null(err);
        free(buf);
        return d;
}

static void expect_same(const wal_msg *a, const wal_msg *b)
{
        cr_expect_eq(wal_msg_type(a), wal_msg_type(b));
        size_t la, lb;
        const void *pa = wal_msg_payload(a, &la);
        const void *pb = wal_msg_payload(b, &lb);
        cr_expect_eq(la, lb);
        if (la == lb)
                cr_expect_eq(memcmp(pa, pb, la), 0);
        cr_expect_eq(wal_msg_prop_count(a), wal_msg_prop_count(b));
        for (size_t i = 0; i < wal_msg_prop_count(a); i++) {
                const char *ka, *va, *kb, *vb;
                cr_assert_eq(wal_msg_prop_at(a, i, &ka, &va), 0);
                cr_assert_eq(wal_msg_prop_at(b, i, &kb, &vb), 0);
                cr_expect_str_eq(ka, kb, "property %zu key", i);
                cr_expect_str_eq(va, vb, "property %zu value", i);
        }
        const char *va = wal_msg_vchannel(a), *vb = wal_msg_vchannel(b);
        if (va)
                cr_expect(vb && strcmp(va, vb) == 0);
        else
                cr_expect_null(vb);
        cr_expect_eq(wal_msg_time_tick(a), wal_msg_time_tick(b));
        cr_expect_eq(wal_msg_term(a), wal_msg_term(b));
        cr_expect(wal_msgid_eq(wal_msg_last_confirmed(a), wal_msg_last_confirmed(b)));
        cr_expect_eq(wal_msg_txn_id(a), wal_msg_txn_id(b));
        cr_expect_eq(wal_msg_txn_keepalive_ms(a), wal_msg_txn_keepalive_ms(b));
        cr_expect_not(wal_msg_is_immutable(b), "decode yields a mutable message");
}

Test(envelope, round_trip_every_field)
{
        wal_msg *m = make_full("hello", 5);
        wal_msg *d = round_trip(m);
        expect_same(m, d);
        cr_expect_str_eq(wal_msg_prop(d, "utf8-ключ"), "значение");
        cr_expect_str_eq(wal_msg_prop(d, "empty-value"), "");
        cr_expect_str_eq(wal_msg_vchannel(d), "vch-7");
        cr_expect_eq(wal_msg_term(d), -42);
        /* The result can be frozen with the record's ID. */
        cr_expect_eq(wal_msg_freeze(d, WAL_MSGID(0, 9)), 0);
        wal_msg_unref(d);
        wal_msg_unref(m);
}

/*
 * The wire bytes of make_full()'s envelope as protobuf-c 1.4.1's own packer
 * (walu__envelope__pack) wrote them: pins the format, and shows the
 * hand-written encoder matches protobuf-c byte for byte.
 */
static const uint8_t golden_full[] = {
        0x08, 0x01, 0x10, 0x04, 0x1a, 0x08, 0x0a, 0x02, 0x6b, 0x31, 0x12, 0x02,
        0x76, 0x31, 0x1a, 0x0d, 0x0a, 0x0b, 0x65, 0x6d, 0x70, 0x74, 0x79, 0x2d,
        0x76, 0x61, 0x6c, 0x75, 0x65, 0x22, 0x05, 0x76, 0x63, 0x68, 0x2d, 0x37,
        0x28, 0x85, 0x80, 0x80, 0x80, 0xda, 0xf2, 0xcf, 0x97, 0x06, 0x30, 0xd6,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x38, 0x01, 0x40,
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x48, 0x03,
        0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x58,
        0xff, 0xff, 0xff, 0xff, 0x0f,
};

Test(envelope, golden_bytes)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_TXN_COMMIT, "hello", 5, &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, "k1", "v1"), 0);
        cr_assert_eq(wal_msg_set_prop(m, "empty-value", ""), 0);
        cr_assert_eq(wal_msg_set_vchannel(m, "vch-7"), 0);
        cr_assert_eq(wal_msg_set_time_tick(m, (UINT64_C(1700000000000) << 18) | 5), 0);
        cr_assert_eq(wal_msg_set_term(m, -42), 0);
        cr_assert_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(UINT64_MAX - 1, 3)), 0);
        cr_assert_eq(wal_msg_set_txn(m, UINT64_MAX, UINT32_MAX), 0);
        uint8_t buf[128];
        cr_assert_eq(walu_envelope_size(m), sizeof(golden_full));
        cr_assert_eq(walu_envelope_encode(m, buf, sizeof(buf)), (int)sizeof(golden_full));
        cr_expect_eq(memcmp(buf, golden_full, sizeof(golden_full)), 0);
        /* Every buffer one byte short fails without writing past it. */
        for (size_t n = 0; n < sizeof(golden_full); n++) {
                uint8_t *small = malloc(n ? n : 1);
                cr_expect_eq(walu_envelope_encode(m, small, n), -ENOSPC, "len %zu", n);
                free(small);
        }
        wal_msg *d = NULL;
        cr_assert_eq(walu_envelope_decode(golden_full, sizeof(golden_full), "hello", 5,
                                          &d, NULL), 0);
        expect_same(m, d);
        wal_msg_unref(d);
        wal_msg_unref(m);
}

Test(envelope, every_type_round_trips)
{
        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++) {
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new((enum wal_msg_type)t, "x", 1, &m), 0);
                wal_msg *d = round_trip(m);
                expect_same(m, d);
                wal_msg_unref(d);
                wal_msg_unref(m);
        }
}

Test(envelope, defaults_round_trip_and_are_small)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, NULL, 0, &m), 0);
        /* version and type only: two one-byte tags, two one-byte varints. */
        cr_expect_eq(walu_envelope_size(m), 4u);
        wal_msg *d = round_trip(m);
        expect_same(m, d);
        cr_expect(wal_msgid_is_none(wal_msg_last_confirmed(d)));
        cr_expect_null(wal_msg_vchannel(d));
        wal_msg_unref(d);
        wal_msg_unref(m);
}

/*
 * A message with neither properties nor vchannel, encoded into a roomy
 * buffer, takes the encoder's plain fast path; into its exact size, the
 * general writer.  Both must write the same bytes, for every field at its
 * default, small and extreme values.
 */
Test(envelope, plain_fast_path_writes_the_general_bytes)
{
        static const uint64_t u64s[] = { 0, 1, 127, 128, UINT64_C(1) << 35,
                                         (UINT64_C(1767225600000) << 18) | 77, UINT64_MAX };
        static const int64_t terms[] = { 0, 1, 300, INT64_MAX, -1, INT64_MIN };
        static const uint32_t keepalives[] = { 0, 5, UINT32_MAX };
        size_t n = sizeof(u64s) / sizeof(u64s[0]);
        int checked = 0;
        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++)
        for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sizeof(terms) / sizeof(terms[0]); j++)
        for (size_t k = 0; k < n + 1; k++) {   /* k == n: no last-confirmed ID */
                wal_msg *m = NULL;
                cr_assert_eq(wal_msg_new((enum wal_msg_type)t, "p", 1, &m), 0);
                cr_assert_eq(wal_msg_set_time_tick(m, u64s[i]), 0);
                cr_assert_eq(wal_msg_set_term(m, terms[j]), 0);
                if (k < n)
                        cr_assert_eq(wal_msg_set_last_confirmed(
                                             m, WAL_MSGID(u64s[(k + i) % n], u64s[k])), 0);
                cr_assert_eq(wal_msg_set_txn(m, u64s[(i + j + k) % n],
                                             keepalives[(i + k) % 3]), 0);
                size_t sz = walu_envelope_size(m);
                uint8_t exact[128], roomy[256];
                cr_assert_leq(sz, sizeof(exact));
                cr_assert_eq(walu_envelope_encode(m, exact, sz), (int)sz);
                memset(roomy, 0xa5, sizeof(roomy));
                cr_assert_eq(walu_envelope_encode(m, roomy, sizeof(roomy)), (int)sz);
                cr_assert_eq(memcmp(exact, roomy, sz), 0, "type %d tick %zu term %zu lc %zu",
                             t, i, j, k);
                cr_assert_eq(roomy[sz], 0xa5, "wrote past its length");
                wal_msg_unref(m);
                checked++;
        }
        cr_expect_gt(checked, 1000);
}

Test(envelope, last_confirmed_zero_is_not_none)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "a", 1, &m), 0);
        cr_assert_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(0, 0)), 0);
        wal_msg *d = round_trip(m);
        cr_expect(wal_msgid_eq(wal_msg_last_confirmed(d), WAL_MSGID(0, 0)));
        wal_msg_unref(d);
        wal_msg_unref(m);
}

Test(envelope, many_properties_keep_order)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "p", 1, &m), 0);
        /* Descending names, so a sorted decode would show. */
        for (int i = 999; i >= 0; i--) {
                char k[32], v[32];
                snprintf(k, sizeof(k), "key-%04d", i);
                snprintf(v, sizeof(v), "value-%d", i * 7);
                cr_assert_eq(wal_msg_set_prop(m, k, v), 0);
        }
        wal_msg *d = round_trip(m);
        cr_assert_eq(wal_msg_prop_count(d), 1000u);
        expect_same(m, d);
        const char *k;
        cr_assert_eq(wal_msg_prop_at(d, 0, &k, NULL), 0);
        cr_expect_str_eq(k, "key-0999");
        wal_msg_unref(d);
        wal_msg_unref(m);
}

Test(envelope, binary_payload)
{
        uint8_t payload[4096];
        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)(i * 37);
        payload[0] = 0;
        wal_msg *m = make_full(payload, sizeof(payload));
        wal_msg *d = round_trip(m);
        expect_same(m, d);
        wal_msg_unref(d);
        wal_msg_unref(m);
}

Test(envelope, foreign_record_is_plain_data)
{
        wal_msg *d = NULL;
        cr_assert_eq(walu_envelope_decode(NULL, 0, "from kcat", 9, &d, NULL), 0);
        cr_expect_eq(wal_msg_type(d), WAL_MSG_DATA);
        size_t len;
        const char *p = wal_msg_payload(d, &len);
        cr_expect_eq(len, 9u);
        cr_expect_eq(memcmp(p, "from kcat", 9), 0);
        cr_expect_eq(wal_msg_prop_count(d), 0u);
        cr_expect(wal_msgid_is_none(wal_msg_last_confirmed(d)));
        wal_msg_unref(d);

        /* Foreign and empty. */
        cr_assert_eq(walu_envelope_decode(NULL, 0, NULL, 0, &d, NULL), 0);
        cr_expect_eq(wal_msg_type(d), WAL_MSG_DATA);
        wal_msg_unref(d);
}

Test(envelope, null_and_bad_arguments)
{
        wal_msg *m = NULL, *d = NULL;
        uint8_t buf[64];
        wal_error *err = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "x", 1, &m), 0);
        cr_expect_eq(walu_envelope_size(NULL), 0u);
        cr_expect_eq(walu_envelope_encode(NULL, buf, sizeof(buf)), -EINVAL);
        cr_expect_eq(walu_envelope_encode(m, NULL, 10), -EINVAL);
        cr_expect_eq(walu_envelope_encode(m, NULL, 0), -ENOSPC);
        cr_expect_eq(walu_envelope_encode(m, buf, 3), -ENOSPC);
        cr_expect_eq(walu_envelope_encode(m, buf, 4), 4);
        cr_expect_eq(walu_envelope_decode(buf, 4, "x", 1, NULL, &err), -EINVAL);
        cr_expect_eq(wal_error_code(err), -EINVAL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(walu_envelope_decode(NULL, 4, "x", 1, &d, &err), -EINVAL);
        cr_expect_null(d);
        cr_expect(strstr(wal_error_message(err), "NULL envelope") != NULL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(walu_envelope_decode(buf, 4, NULL, 1, &d, &err), -EINVAL);
        cr_expect_null(d);
        wal_error_free(err);
        /* reterr is optional. */
        cr_expect_eq(walu_envelope_decode(buf, 4, NULL, 1, &d, NULL), -EINVAL);
        wal_msg_unref(m);
}

/* Decode hostile bytes: fail with -EBADMSG and a message, or succeed with a
 * usable message.  Returns the code. */
static int decode_hostile(const uint8_t *env, size_t len)
{
        wal_msg *d = NULL;
        wal_error *err = NULL;
        int r = walu_envelope_decode(env, len, "pl", 2, &d, &err);
        if (r < 0) {
                cr_assert_eq(r, -EBADMSG, "len %zu: %d (%s)", len, r, wal_error_message(err));
                cr_assert_eq(wal_error_code(err), -EBADMSG);
                cr_assert(strncmp(wal_error_message(err), "envelope: ", 10) == 0,
                          "message '%s'", wal_error_message(err));
                cr_assert_null(d);
                wal_error_free(err);
        } else {
                cr_assert_null(err);
                cr_assert_not_null(d);
                cr_assert_not_null(wal_msg_type_name(wal_msg_type(d)));
                for (size_t i = 0; i < wal_msg_prop_count(d); i++) {
                        const char *k, *v;
                        cr_assert_eq(wal_msg_prop_at(d, i, &k, &v), 0);
                        cr_assert(k && *k && v);
                }
                wal_msg_unref(d);
        }
        return r;
}

Test(envelope, every_prefix_fails_cleanly_or_is_valid)
{
        wal_msg *m = make_full("payload", 7);
        size_t sz = walu_envelope_size(m);
        uint8_t *buf = malloc(sz);
        cr_assert_eq(walu_envelope_encode(m, buf, sz), (int)sz);
        int failures = 0;
        for (size_t n = 0; n < sz; n++) {
                /* A copy of exactly n bytes, so ASan sees any over-read. */
                uint8_t *pre = malloc(n ? n : 1);
                memcpy(pre, buf, n);
                if (decode_hostile(pre, n) < 0)
                        failures++;
                free(pre);
        }
        /* Most prefixes cut a field in half; the empty one has no version. */
        cr_expect_gt(failures, (int)sz / 2);
        free(buf);
        wal_msg_unref(m);
}

Test(envelope, random_garbage)
{
        unsigned seed = 4242;
        uint8_t buf[256];
        for (int iter = 0; iter < 20000; iter++) {
                size_t len = (size_t)rand_r(&seed) % sizeof(buf);
                for (size_t i = 0; i < len; i++)
                        buf[i] = (uint8_t)rand_r(&seed);
                decode_hostile(buf, len);
        }
}

Test(envelope, bit_flips_of_a_valid_envelope)
{
        wal_msg *m = make_full("payload", 7);
        size_t sz = walu_envelope_size(m);
        uint8_t *buf = malloc(sz), *copy = malloc(sz);
        cr_assert_eq(walu_envelope_encode(m, buf, sz), (int)sz);
        for (size_t bit = 0; bit < sz * 8; bit++) {
                memcpy(copy, buf, sz);
                copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                decode_hostile(copy, sz);
        }
        free(copy);
        free(buf);
        wal_msg_unref(m);
}

static void expect_badmsg(const uint8_t *env, size_t len, const char *needle)
{
        wal_msg *d = NULL;
        wal_error *err = NULL;
        cr_expect_eq(walu_envelope_decode(env, len, "p", 1, &d, &err), -EBADMSG);
        cr_expect_null(d);
        cr_expect(strstr(wal_error_message(err), needle) != NULL,
                  "message '%s' lacks '%s'", wal_error_message(err), needle);
        wal_error_free(err);
        wal_msg_unref(d);
}

/* Hand-made wire data: tag = field << 3 | wire type (0 varint, 2 bytes). */
Test(envelope, bad_version)
{
        const uint8_t v2[] = { 0x08, 0x02, 0x10, 0x01 };
        expect_badmsg(v2, sizeof(v2), "unknown version 2");
        const uint8_t v0[] = { 0x10, 0x01 };
        expect_badmsg(v0, sizeof(v0), "unknown version 0");
        const uint8_t empty[] = { 0 };
        expect_badmsg(empty, 0, "unknown version 0");
}

Test(envelope, bad_type)
{
        const uint8_t t0[] = { 0x08, 0x01 };
        expect_badmsg(t0, sizeof(t0), "type 0 out of range");
        const uint8_t t7[] = { 0x08, 0x01, 0x10, 0x07 };
        expect_badmsg(t7, sizeof(t7), "type 7 out of range");
        const uint8_t tbig[] = { 0x08, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f };
        expect_badmsg(tbig, sizeof(tbig), "type 4294967295 out of range");
}

Test(envelope, empty_property_key)
{
        /* properties { key: "" value: "v" } */
        const uint8_t e[] = { 0x08, 0x01, 0x10, 0x01, 0x1a, 0x03, 0x12, 0x01, 'v' };
        expect_badmsg(e, sizeof(e), "empty key");
}

Test(envelope, duplicate_property_key)
{
        const uint8_t e[] = { 0x08, 0x01, 0x10, 0x01,
                              0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'a',
                              0x1a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'b' };
        expect_badmsg(e, sizeof(e), "duplicate property key 'k'");
}

Test(envelope, embedded_nul_is_refused)
{
        /* key "a\0b" */
        const uint8_t k[] = { 0x08, 0x01, 0x10, 0x01,
                              0x1a, 0x05, 0x0a, 0x03, 'a', 0x00, 'b' };
        expect_badmsg(k, sizeof(k), "key: contains a NUL byte");
        /* key "k", value "x\0" */
        const uint8_t v[] = { 0x08, 0x01, 0x10, 0x01,
                              0x1a, 0x07, 0x0a, 0x01, 'k', 0x12, 0x02, 'x', 0x00 };
        expect_badmsg(v, sizeof(v), "property 'k' value: contains a NUL byte");
        /* vchannel "\0" */
        const uint8_t vc[] = { 0x08, 0x01, 0x10, 0x01, 0x22, 0x01, 0x00 };
        expect_badmsg(vc, sizeof(vc), "vchannel: contains a NUL byte");
}

Test(envelope, long_and_non_utf8_text)
{
        /* Longer than the decoder's stack buffers, and bytes that are not
         * UTF-8: text is opaque apart from NUL. */
        char key[300], value[1000], vch[200];
        memset(key, 'k', sizeof(key) - 1);
        key[sizeof(key) - 1] = '\0';
        memset(value, 'v', sizeof(value) - 1);
        value[sizeof(value) - 1] = '\0';
        memset(vch, 'c', sizeof(vch) - 1);
        vch[sizeof(vch) - 1] = '\0';
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "p", 1, &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, key, value), 0);
        cr_assert_eq(wal_msg_set_prop(m, "\xff\xfe", "\xc3\x28"), 0);
        cr_assert_eq(wal_msg_set_vchannel(m, vch), 0);
        wal_msg *d = round_trip(m);
        expect_same(m, d);
        cr_expect_str_eq(wal_msg_prop(d, "\xff\xfe"), "\xc3\x28");
        wal_msg_unref(d);
        wal_msg_unref(m);
}

Test(envelope, unknown_fields_are_skipped)
{
        /* A future field 15 (varint) must not stop a version-1 reader. */
        const uint8_t e[] = { 0x08, 0x01, 0x10, 0x01, 0x78, 0x05 };
        wal_msg *d = NULL;
        cr_assert_eq(walu_envelope_decode(e, sizeof(e), "p", 1, &d, NULL), 0);
        cr_expect_eq(wal_msg_type(d), WAL_MSG_DATA);
        wal_msg_unref(d);
}

Test(envelope, oversize)
{
        /* Decoding: refused on the length alone, before unpacking. */
        size_t big = (size_t)WALU_ENVELOPE_MAX + 1;
        uint8_t *buf = calloc(1, big);
        cr_assert_not_null(buf);
        expect_badmsg(buf, big, "exceeds");

        /* Encoding: a property value over the cap. */
        char *v = malloc(WALU_ENVELOPE_MAX + 1);
        memset(v, 'x', WALU_ENVELOPE_MAX);
        v[WALU_ENVELOPE_MAX] = '\0';
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, NULL, 0, &m), 0);
        cr_assert_eq(wal_msg_set_prop(m, "big", v), 0);
        cr_expect_gt(walu_envelope_size(m), (size_t)WALU_ENVELOPE_MAX);
        uint8_t *out = malloc(2 * WALU_ENVELOPE_MAX);
        cr_expect_eq(walu_envelope_encode(m, out, 2 * WALU_ENVELOPE_MAX), -EMSGSIZE);
        free(out);
        free(v);
        free(buf);
        wal_msg_unref(m);
}
