/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-kafka-key.c: fuzz target for the Kafka backend's record
 * key decoder (impls/kafka/kafka-key.c, both layouts).
 *
 * Input: the whole input is a record key, copied into a buffer of exactly
 * its size so that an over-read shows under ASan.
 *
 * Beyond "no crash": a refusal is -EBADMSG with a matching error object; a
 * key that is not ours gives no envelope; kafka_key_decode() (the reader's
 * path) agrees with kafka_key_envelope() followed by the envelope decoder
 * (utility/envelope.c): both refuse, or both give the same message; a
 * compact key that is accepted decodes to a message whose compact key is
 * the input again, byte for byte (every message has one compact encoding;
 * under the first prefix "\0wk", the same bytes after today's prefix); the
 * envelope decoders an earlier libwal ran on what follows "\0wal" (the
 * hand-written one and protobuf-c's) refuse every accepted compact key; a
 * message decoded from a full-layout key that the compact layout can hold
 * reads back the same through its compact key.  A violation aborts.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include "impls/kafka/kafka-internal.h"
#include "utility/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
        fprintf(stderr, "fuzz-kafka-key: %s\n", what);
        abort();
}

static bool same_envelope(const wal_msg *a, const wal_msg *b)
{
        size_t la, lb;
        const void *pa = wal_msg_payload(a, &la), *pb = wal_msg_payload(b, &lb);
        if (la != lb || (la && memcmp(pa, pb, la) != 0))
                return false;
        if (wal_msg_prop_count(a) != wal_msg_prop_count(b) ||
            !wal_msg_vchannel(a) != !wal_msg_vchannel(b) ||
            wal_msg_txn_id(a) != wal_msg_txn_id(b) ||
            wal_msg_txn_keepalive_ms(a) != wal_msg_txn_keepalive_ms(b))
                return false;
        return wal_msg_type(a) == wal_msg_type(b) &&
               wal_msg_time_tick(a) == wal_msg_time_tick(b) &&
               wal_msg_term(a) == wal_msg_term(b) &&
               wal_msgid_eq(wal_msg_last_confirmed(a), wal_msg_last_confirmed(b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *key = malloc(size ? size : 1);
        if (!key)
                return 0;
        memcpy(key, data, size);
        uint8_t buf[KAFKA_KEY_ENVELOPE_MAX];
        const uint8_t *env = NULL;
        size_t elen = 0;
        wal_error *err = NULL;
        wal_msg *direct = NULL;
        int dr = kafka_key_decode(size ? key : NULL, size, "p", 1, &direct, &err);
        if (dr < 0 && (!err || wal_error_code(err) != dr || direct))
                fail("kafka_key_decode: refusal without its error object");
        if (dr >= 0 && err)
                fail("kafka_key_decode: error object without a refusal");
        if (dr == 0 && direct)
                fail("kafka_key_decode: a message from a key that is not ours");
        wal_error_free(err);
        err = NULL;
        int r = kafka_key_envelope(size ? key : NULL, size, buf, &env, &elen, &err);
        if (r < 0) {
                if (r != -EBADMSG || !err || wal_error_code(err) != r || env)
                        fail("refusal is not -EBADMSG with its error object");
                if (dr != r)
                        fail("kafka_key_decode accepts a key kafka_key_envelope refuses");
                wal_error_free(err);
                free(key);
                return 0;
        }
        if (err)
                fail("error object without a refusal");
        if (r == 0) {
                if (env || elen)
                        fail("an envelope from a key that is not ours");
                if (dr != 0)
                        fail("kafka_key_decode calls ours a key that is not");
                free(key);
                return 0;
        }
        bool compact = size >= KAFKA_KEY_COMPACT_MAGIC_LEN &&
                       memcmp(key, KAFKA_KEY_COMPACT_MAGIC, KAFKA_KEY_COMPACT_MAGIC_LEN) == 0;
        bool compact_v0 = size >= KAFKA_KEY_COMPACT_V0_MAGIC_LEN &&
                          memcmp(key, KAFKA_KEY_COMPACT_V0_MAGIC,
                                 KAFKA_KEY_COMPACT_V0_MAGIC_LEN) == 0;
        if (compact) {
                /* What a libwal before the compact layout does with it. */
                wal_msg *o = NULL;
                if (walu_envelope_decode(key + KAFKA_KEY_MAGIC_LEN, size - KAFKA_KEY_MAGIC_LEN,
                                         "p", 1, &o, NULL) != -EBADMSG || o ||
                    walu_envelope_decode_protobuf(key + KAFKA_KEY_MAGIC_LEN,
                                                  size - KAFKA_KEY_MAGIC_LEN, "p", 1, &o,
                                                  NULL) != -EBADMSG || o)
                        fail("an earlier reader's envelope decoder reads a compact key");
        }
        compact = compact || compact_v0;
        if (compact && elen > KAFKA_KEY_ENVELOPE_MAX)
                fail("envelope larger than its buffer");
        wal_msg *m = NULL;
        int d = walu_envelope_decode(env, elen, "p", 1, &m, &err);
        if (d < 0) {
                if (compact)
                        fail("an accepted compact key does not decode");
                if (dr != d)
                        fail("kafka_key_decode and the envelope decoder disagree");
                wal_error_free(err);
                free(key);
                return 0;
        }
        if (dr != 1 || !same_envelope(m, direct))
                fail("kafka_key_decode gives another message than the envelope decoder");
        wal_msg_unref(direct);
        uint8_t again[KAFKA_KEY_COMPACT_MAX];
        size_t n = kafka_key_compact(m, again);
        if (compact && !compact_v0 && (n != size || memcmp(again, key, size) != 0))
                fail("a compact key does not re-encode to itself");
        if (compact_v0 &&
            (n != size + KAFKA_KEY_COMPACT_MAGIC_LEN - KAFKA_KEY_COMPACT_V0_MAGIC_LEN ||
             memcmp(again + KAFKA_KEY_COMPACT_MAGIC_LEN, key + KAFKA_KEY_COMPACT_V0_MAGIC_LEN,
                    size - KAFKA_KEY_COMPACT_V0_MAGIC_LEN) != 0))
                fail("a first-prefix compact key does not re-encode to its fields");
        if (n) {
                wal_msg *m2 = NULL;
                if (kafka_key_envelope(again, n, buf, &env, &elen, NULL) != 1 ||
                    walu_envelope_decode(env, elen, "p", 1, &m2, NULL) < 0)
                        fail("our own compact key does not read back");
                if (!same_envelope(m, m2))
                        fail("the compact key reads back as another envelope");
                wal_msg_unref(m2);
        }
        wal_msg_unref(m);
        free(key);
        return 0;
}
