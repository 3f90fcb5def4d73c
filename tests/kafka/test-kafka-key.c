/* SPDX-License-Identifier: MIT */
/*
 * tests/kafka/test-kafka-key.c: the record key codec (impls/kafka/kafka-key.c)
 * without a cluster: which messages get the compact layout, that a compact
 * key reads back as the same envelope as the full layout's, that the full
 * layout's keys (what every earlier libwal wrote) and compact keys under
 * the first prefix "\0wk" still read, that the envelope decoders an
 * earlier libwal ran on a "\0wal" key (the hand-written one and protobuf-c's,
 * both still in utility/envelope.c) refuse every compact key, and that
 * truncated, padded and garbage compact keys are refused with -EBADMSG.
 * Reading records of both layouts through the backend is in test-kafka.c.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "impls/kafka/kafka-internal.h"
#include "utility/envelope.h"

static wal_msg *msg(enum wal_msg_type type, uint64_t tick, int64_t term, struct wal_msgid lc)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(type, "pay", 3, &m), 0);
        cr_assert_eq(wal_msg_set_time_tick(m, tick), 0);
        cr_assert_eq(wal_msg_set_term(m, term), 0);
        if (!wal_msgid_is_none(lc))
                cr_assert_eq(wal_msg_set_last_confirmed(m, lc), 0);
        return m;
}

/* Read @key back through kafka_key_envelope() and the envelope decoder and
 * check it is @want's envelope. */
static void reads_as(const uint8_t *key, size_t klen, const wal_msg *want)
{
        uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
        const uint8_t *env = NULL;
        size_t elen = 0;
        wal_error *err = NULL;
        cr_assert_eq(kafka_key_envelope(key, klen, buf, &env, &elen, &err), 1, "%s",
                     wal_error_message(err));
        wal_msg *got = NULL;
        cr_assert_eq(walu_envelope_decode(env, elen, "pay", 3, &got, &err), 0, "%s",
                     wal_error_message(err));
        cr_assert_eq(wal_msg_type(got), wal_msg_type(want));
        cr_assert_eq(wal_msg_time_tick(got), wal_msg_time_tick(want));
        cr_assert_eq(wal_msg_term(got), wal_msg_term(want));
        cr_assert(wal_msgid_eq(wal_msg_last_confirmed(got), wal_msg_last_confirmed(want)));
        cr_assert_eq(wal_msg_prop_count(got), 0);
        cr_assert_null(wal_msg_vchannel(got));
        /* The reader's path builds the same message without those bytes. */
        wal_msg *direct = NULL;
        cr_assert_eq(kafka_key_decode(key, klen, "pay", 3, &direct, &err), 1, "%s",
                     wal_error_message(err));
        size_t plen;
        const void *pl = wal_msg_payload(direct, &plen);
        cr_assert_eq(plen, 3);
        cr_assert_eq(memcmp(pl, "pay", 3), 0);
        cr_assert_eq(wal_msg_type(direct), wal_msg_type(want));
        cr_assert_eq(wal_msg_time_tick(direct), wal_msg_time_tick(want));
        cr_assert_eq(wal_msg_term(direct), wal_msg_term(want));
        cr_assert(wal_msgid_eq(wal_msg_last_confirmed(direct), wal_msg_last_confirmed(want)));
        cr_assert_eq(wal_msg_prop_count(direct), 0);
        cr_assert_null(wal_msg_vchannel(direct));
        cr_assert_eq(wal_msg_txn_id(direct), 0);
        wal_msg_unref(direct);
        /* The same envelope bytes as the full layout's encoder writes. */
        uint8_t full[128];
        int flen = walu_envelope_encode(want, full, sizeof(full));
        cr_assert_gt(flen, 0);
        cr_assert_eq((size_t)flen, elen);
        cr_assert_eq(memcmp(full, env, elen), 0);
        wal_msg_unref(got);
}

/* What a libwal from before the compact layout does with the key @key:
 * its magic "\0wal" says full layout, so what follows goes to the envelope
 * decoder, which must refuse it (-EBADMSG with an error saying so) rather
 * than return a message.  Both decoders an earlier reader ran: the
 * hand-written one (since ff139c2) and protobuf-c's unpack (before). */
static void old_readers_refuse(const uint8_t *key, size_t klen)
{
        cr_assert_geq(klen, 5);
        cr_assert_eq(memcmp(key, "\0wal", 4), 0, "an earlier reader would not take it as ours");
        int (*const dec[2])(const uint8_t *, size_t, const void *, size_t, wal_msg **,
                            wal_error **) = { walu_envelope_decode,
                                              walu_envelope_decode_protobuf };
        for (int i = 0; i < 2; i++) {
                wal_msg *got = NULL;
                wal_error *err = NULL;
                int r = dec[i](key + 4, klen - 4, "pay", 3, &got, &err);
                cr_assert_eq(r, -EBADMSG, "decoder %d read a compact key of %zu bytes (%d)", i,
                             klen, r);
                cr_assert_null(got);
                cr_assert_eq(wal_error_code(err), -EBADMSG);
                wal_error_free(err);
        }
}

/* The same key under the first prefix, "\0wk" in place of "\0wal\x07". */
static size_t first_prefix(const uint8_t *key, size_t klen, uint8_t *out)
{
        memcpy(out, "\0wk", 3);
        memcpy(out + 3, key + 5, klen - 5);
        return klen - 2;
}

static const uint64_t tick = ((uint64_t)1767225600000 << 18) | 12345;

Test(kafka_key, the_usual_data_message_is_18_bytes_and_reads_back)
{
        wal_msg *m = msg(WAL_MSG_DATA, tick, 1, WAL_MSGID(0, 999999));
        uint8_t key[KAFKA_KEY_COMPACT_MAX];
        size_t n = kafka_key_compact(m, key);
        /* prefix 5, head 1, tick 8, term 1, lc lo 3 */
        cr_assert_eq(n, 18);
        static const uint8_t want[6] = { 0, 'w', 'a', 'l', 0x07, 0x01 | 0x08 | 0x10 | 0x20 };
        cr_assert_eq(memcmp(key, want, 6), 0);
        /* The tick, little-endian, then term 1 and 999999 as varints. */
        for (unsigned i = 0; i < 8; i++)
                cr_assert_eq(key[6 + i], (uint8_t)(tick >> (8 * i)));
        cr_assert_eq(key[14], 0x01);
        cr_assert_eq(memcmp(key + 15, "\xbf\x84\x3d", 3), 0);
        reads_as(key, n, m);
        old_readers_refuse(key, n);
        wal_msg_unref(m);
}

Test(kafka_key, every_field_combination_round_trips)
{
        const uint64_t ticks[] = { 0, 1, tick, UINT64_MAX };
        const int64_t terms[] = { 0, 1, 300, INT64_MAX, -1 };
        const struct wal_msgid lcs[] = { WAL_MSGID_NONE, WAL_MSGID(0, 0), WAL_MSGID(0, 127),
                                         WAL_MSGID(5, 1 << 20), WAL_MSGID(UINT64_MAX, 0),
                                         WAL_MSGID(0, UINT64_MAX) };
        for (int t = WAL_MSG_DATA; t <= WAL_MSG_TYPE_MAX; t++)
                for (size_t a = 0; a < sizeof(ticks) / sizeof(ticks[0]); a++)
                        for (size_t b = 0; b < sizeof(terms) / sizeof(terms[0]); b++)
                                for (size_t c = 0; c < sizeof(lcs) / sizeof(lcs[0]); c++) {
                                        wal_msg *m = msg((enum wal_msg_type)t, ticks[a],
                                                         terms[b], lcs[c]);
                                        uint8_t key[KAFKA_KEY_COMPACT_MAX];
                                        size_t n = kafka_key_compact(m, key);
                                        cr_assert_gt(n, 5);
                                        cr_assert_leq(n, KAFKA_KEY_COMPACT_MAX);
                                        reads_as(key, n, m);
                                        old_readers_refuse(key, n);
                                        uint8_t v0[KAFKA_KEY_COMPACT_MAX];
                                        reads_as(v0, first_prefix(key, n, v0), m);
                                        wal_msg_unref(m);
                                }
}

Test(kafka_key, properties_vchannel_and_transactions_take_the_full_layout)
{
        uint8_t key[KAFKA_KEY_COMPACT_MAX];
        memset(key, 0xee, sizeof(key));
        wal_msg *m = msg(WAL_MSG_DATA, tick, 1, WAL_MSGID_NONE);
        cr_assert_eq(wal_msg_set_prop(m, "k", "v"), 0);
        cr_assert_eq(kafka_key_compact(m, key), 0);
        wal_msg_unref(m);
        m = msg(WAL_MSG_DATA, tick, 1, WAL_MSGID_NONE);
        cr_assert_eq(wal_msg_set_vchannel(m, "vc"), 0);
        cr_assert_eq(kafka_key_compact(m, key), 0);
        wal_msg_unref(m);
        m = msg(WAL_MSG_TXN_BEGIN, tick, 1, WAL_MSGID_NONE);
        cr_assert_eq(wal_msg_set_txn(m, 42, 0), 0);
        cr_assert_eq(kafka_key_compact(m, key), 0);
        wal_msg_unref(m);
        cr_assert_eq(key[0], 0xee, "the buffer was written for a full-layout message");
}

/* A key in the full layout, as every earlier libwal wrote it (the magic and
 * the protobuf envelope), given as bytes: still ours, and read as it was. */
Test(kafka_key, full_layout_keys_written_before_still_read)
{
        /* "\0wal", version 1, type 1, tick 12345, term 7, has_lc, lc lo 5 */
        static const uint8_t old[] = { 0, 'w', 'a', 'l', 0x08, 0x01, 0x10, 0x01, 0x28, 0xb9,
                                       0x60, 0x30, 0x07, 0x38, 0x01, 0x48, 0x05 };
        uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
        const uint8_t *env = NULL;
        size_t elen = 0;
        cr_assert_eq(kafka_key_envelope(old, sizeof(old), buf, &env, &elen, NULL), 1);
        cr_assert_eq(env, old + 4, "the full layout's envelope is read in place");
        cr_assert_eq(elen, sizeof(old) - 4);
        wal_msg *got = NULL;
        cr_assert_eq(walu_envelope_decode(env, elen, NULL, 0, &got, NULL), 0);
        cr_assert_eq(wal_msg_type(got), WAL_MSG_DATA);
        cr_assert_eq(wal_msg_time_tick(got), 12345);
        cr_assert_eq(wal_msg_term(got), 7);
        cr_assert(wal_msgid_eq(wal_msg_last_confirmed(got), WAL_MSGID(0, 5)));
        wal_msg_unref(got);
        /* The same message's compact key gives the same envelope bytes. */
        uint8_t key[KAFKA_KEY_COMPACT_MAX];
        wal_msg *m = msg(WAL_MSG_DATA, 12345, 7, WAL_MSGID(0, 5));
        size_t n = kafka_key_compact(m, key);
        cr_assert_eq(kafka_key_envelope(key, n, buf, &env, &elen, NULL), 1);
        cr_assert_eq(elen, sizeof(old) - 4);
        cr_assert_eq(memcmp(env, old + 4, elen), 0);
        wal_msg_unref(m);
        /* The magic alone is refused, as before. */
        wal_error *err = NULL;
        cr_assert_eq(kafka_key_envelope(old, 4, buf, &env, &elen, &err), -EBADMSG);
        cr_assert_eq(wal_error_code(err), -EBADMSG);
        wal_error_free(err);
}

Test(kafka_key, foreign_keys_are_not_ours)
{
        uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
        const uint8_t *env = (const uint8_t *)"x";
        size_t elen = 9;
        cr_assert_eq(kafka_key_envelope(NULL, 0, buf, &env, &elen, NULL), 0);
        cr_assert_null(env);
        cr_assert_eq(elen, 0);
        cr_assert_eq(kafka_key_envelope("user-42", 7, buf, &env, &elen, NULL), 0);
        cr_assert_eq(kafka_key_envelope("\0wk", 3, buf, &env, &elen, NULL), 0,
                     "the first prefix with no head byte is not a compact key");
        cr_assert_eq(kafka_key_envelope("\0wa", 3, buf, &env, &elen, NULL), 0);
        cr_assert_eq(kafka_key_envelope("\0w", 2, buf, &env, &elen, NULL), 0);
        wal_msg *m = NULL;
        cr_assert_eq(kafka_key_decode("user-42", 7, "pay", 3, &m, NULL), 0);
        cr_assert_eq(kafka_key_decode(NULL, 0, "pay", 3, &m, NULL), 0);
        cr_assert_eq(kafka_key_decode("\0wk", 3, "pay", 3, &m, NULL), 0);
        cr_assert_null(m);
}

static void refused(const uint8_t *key, size_t n, const char *why)
{
        uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
        const uint8_t *env = NULL;
        size_t elen = 0;
        wal_error *err = NULL;
        int r = kafka_key_envelope(key, n, buf, &env, &elen, &err);
        cr_assert_eq(r, -EBADMSG, "%s: got %d", why, r);
        cr_assert_eq(wal_error_code(err), -EBADMSG, "%s", why);
        cr_assert_null(env, "%s", why);
        wal_error_free(err);
        err = NULL;
        wal_msg *m = NULL;
        r = kafka_key_decode(key, n, "pay", 3, &m, &err);
        cr_assert_eq(r, -EBADMSG, "%s: kafka_key_decode gave %d", why, r);
        cr_assert_eq(wal_error_code(err), -EBADMSG, "%s", why);
        cr_assert_null(m, "%s", why);
        wal_error_free(err);
}

/* @body (a head byte and what follows) under either prefix is refused. */
static void refused_both(const char *body, size_t n, const char *why)
{
        uint8_t key[64];
        cr_assert_leq(n + 5, sizeof(key));
        memcpy(key, "\0wal\x07", 5);
        memcpy(key + 5, body, n);
        refused(key, n + 5, why);
        memcpy(key, "\0wk", 3);
        memcpy(key + 3, body, n);
        refused(key, n + 3, why);
}

Test(kafka_key, truncated_compact_keys_are_refused)
{
        wal_msg *m = msg(WAL_MSG_DATA, tick, 300, WAL_MSGID(7, 1 << 20));
        uint8_t key[KAFKA_KEY_COMPACT_MAX];
        size_t n = kafka_key_compact(m, key);
        wal_msg_unref(m);
        cr_assert_eq(n, 5 + 1 + 8 + 2 + 1 + 3);
        /* From the bare magic on: "\0wal" and "\0wal\x07" are ours too. */
        for (size_t cut = 4; cut < n; cut++)
                refused(key, cut, "cut short");
        /* One byte more than the head says. */
        uint8_t longer[KAFKA_KEY_COMPACT_MAX + 1];
        memcpy(longer, key, n);
        longer[n] = 0;
        refused(longer, n + 1, "trailing byte");
        /* The same under the first prefix (3 bytes alone are foreign). */
        uint8_t v0[KAFKA_KEY_COMPACT_MAX + 1];
        size_t n0 = first_prefix(key, n, v0);
        for (size_t cut = 4; cut < n0; cut++)
                refused(v0, cut, "first prefix, cut short");
        v0[n0] = 0;
        refused(v0, n0 + 1, "first prefix, trailing byte");
}

Test(kafka_key, garbage_compact_keys_are_refused)
{
        /* Reserved bit, types 0 and 7, a high word without the ID. */
        refused_both("\x81", 1, "bit 7");
        refused_both("\x00", 1, "type 0");
        refused_both("\x07", 1, "type 7");
        refused_both("\x41\x01", 2, "lc hi without lc");
        /* Fields present with the value their absence means. */
        refused_both("\x09\0\0\0\0\0\0\0\0", 9, "zero tick");
        refused_both("\x11\x00", 2, "zero term");
        refused_both("\x61\x00\x00", 3, "zero lc hi");
        /* Varints not in their shortest form, or past 64 bits. */
        refused_both("\x11\x81\x00", 3, "padded term");
        refused_both("\x21\x80\x80\x00", 4, "padded lc");
        refused_both("\x11\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "term of 65 bits");
        refused_both("\x11\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12,
                     "term of 11 bytes");
        /* The last-confirmed ID "none" cannot be written. */
        refused_both("\x61\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
                     "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 21, "lc none");
        /* A full-layout envelope starting with another byte below 0x08 is
         * refused by the envelope decoder, as it always was. */
        const char *field0[2] = { "\0wal\x00\x01", "\0wal\x06\x01" };
        for (int i = 0; i < 2; i++) {
                wal_msg *m = NULL;
                wal_error *err = NULL;
                cr_assert_eq(kafka_key_decode(field0[i], 6, "pay", 3, &m, &err), -EBADMSG);
                cr_assert_null(m);
                cr_assert_eq(wal_error_code(err), -EBADMSG);
                wal_error_free(err);
        }
        /* A lone head with nothing set is the shortest key: a bare data
         * message, under either prefix. */
        const char *bare[2] = { "\0wal\x07\x01", "\0wk\x01" };
        const size_t barelen[2] = { 6, 4 };
        for (int i = 0; i < 2; i++) {
                uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
                const uint8_t *env = NULL;
                size_t elen = 0;
                cr_assert_eq(kafka_key_envelope(bare[i], barelen[i], buf, &env, &elen, NULL), 1);
                wal_msg *got = NULL;
                cr_assert_eq(walu_envelope_decode(env, elen, NULL, 0, &got, NULL), 0);
                cr_assert_eq(wal_msg_type(got), WAL_MSG_DATA);
                cr_assert_eq(wal_msg_time_tick(got), 0);
                cr_assert(wal_msgid_is_none(wal_msg_last_confirmed(got)));
                wal_msg_unref(got);
        }
        old_readers_refuse((const uint8_t *)bare[0], barelen[0]);
}
