/* SPDX-License-Identifier: MIT */
/*
 * impls/kafka/kafka-key.c: the record key of the Kafka backend's records,
 * which carries the message envelope (kafka.c, "Mapping").
 *
 * Format.  A key is ours when it starts with the magic "\0wal" (or, read
 * only, "\0wk"); any other key (or none) is a foreign record's.  Every
 * integer below is a varint (7 bits a byte, least significant group first,
 * high bit set on every byte but the last) unless said otherwise.
 *
 *  Full layout (every libwal since the key carried the envelope):
 *    "\0wal"  (4 bytes), then the protobuf envelope of utility/envelope.c,
 *    which can say everything a wal_msg holds.  Written for a message with
 *    a property, a vchannel or a transaction field; read forever.  An
 *    envelope never starts with a byte below 0x08 (its first byte is a
 *    field's tag, and field 0 does not exist; encoders write field 1, the
 *    version, first).
 *
 *  Compact layout (written for every other message, the usual data
 *  message: 18 bytes where the full layout takes 26):
 *    off 0  "\0wal"    4 bytes, the full layout's magic
 *    off 4  0x07       1 byte, the compact marker
 *    off 5  head       1 byte:  bits 0-2 the type (1..6, enum wal_msg_type),
 *                               bit 3 a time tick follows,
 *                               bit 4 a term follows,
 *                               bit 5 a last-confirmed ID follows,
 *                               bit 6 its high word is not 0,
 *                               bit 7 zero
 *    then, each only when its bit is set and in this order:
 *      tick     8 bytes, little-endian (never 0; a tick of ms << 18 takes
 *               9 bytes as a varint and is one store this way)
 *      term     the int64 as its 64-bit two's complement (never 0)
 *      lc hi    (bit 6; never 0)
 *      lc lo
 *    and nothing after.  A field left out is 0 (the term, the tick) or
 *    none (the last-confirmed ID); there are no properties, no vchannel
 *    and no transaction fields.
 *  Why the marker: a libwal that predates the compact layout takes a key
 *  starting with "\0wal" for the full layout and hands what follows to its
 *  envelope decoder, which refuses 0x07 as the first byte (a one-byte tag
 *  of field 0 with wire type 7: both the protobuf-c unpack of the first
 *  readers and the hand-written decoder after it refuse either), so its
 *  scanner stops with -EBADMSG naming the channel and offset instead of
 *  reading the record as something else (tests/kafka/test-kafka-key.c runs
 *  both decoders on every compact key).  Readers older still, which took
 *  the envelope from the "_wal" header, ignore keys altogether: no key can
 *  make them refuse (they read any record of ours as foreign data).
 *
 *  Compact layout, first prefix (written by libwal builds of 2026-11-22
 *  only, before any release; read, never written): "\0wk" (3 bytes), then
 *  the head byte and fields exactly as above.  An earlier libwal read such
 *  a key as a foreign one: a tick came back as an empty data message with
 *  tick 0, silently, which is why the prefix changed.
 *
 *  Every message has exactly one compact encoding (per prefix): a reader
 *  refuses a varint longer than 10 bytes or not in its shortest form, a
 *  present field whose value is the one its absence means, an unknown type,
 *  bit 7, and a key longer or shorter than its head says (-EBADMSG, as a
 *  bad full-layout envelope is).  A key of exactly "\0wal\x07" (no head) is
 *  refused too, as it always was.  A foreign key starting with "\0wk" and
 *  at least 4 bytes long is therefore refused rather than read as data,
 *  as one starting with "\0wal" always was.
 *
 * Why a second layout: the key is copied, checksummed, sent and stored per
 * record, on the producer's broker thread and the broker's.  The full
 * layout spends two bytes on the version and type, a tag byte per field and
 * a byte for has_lc; the compact one puts all of that in the head byte (and
 * spends one byte on the marker).
 * A reader builds the message from a compact key's fields directly
 * (kafka_key_decode: what the envelope decoder does with the same fields);
 * kafka_key_envelope() gives the full layout's envelope bytes for the same
 * key, against which the tests and the fuzz target check it.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <wal/wal-message.h>
#include "utility/envelope.h"
#include "kafka-internal.h"

#define HEAD_TYPE 0x07u
#define HEAD_TICK 0x08u
#define HEAD_TERM 0x10u
#define HEAD_LC 0x20u
#define HEAD_LC_HI 0x40u
#define HEAD_RESERVED 0x80u

static inline uint8_t *put_varint(uint8_t *q, uint64_t v)
{
        while (v >= 0x80) {
                *q++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *q++ = (uint8_t)v;
        return q;
}

size_t kafka_key_compact(const wal_msg *m, uint8_t *buf)
{
        if (wal_msg_prop_count(m) || wal_msg_vchannel(m) || wal_msg_txn_id(m) ||
            wal_msg_txn_keepalive_ms(m))
                return 0;
        unsigned type = (unsigned)wal_msg_type(m);
        if (type < 1 || type > WAL_MSG_TYPE_MAX)
                return 0;
        uint64_t tick = wal_msg_time_tick(m), term = (uint64_t)wal_msg_term(m);
        struct wal_msgid lc = wal_msg_last_confirmed(m);
        bool has_lc = !wal_msgid_is_none(lc);
        uint8_t head = (uint8_t)type;
        uint8_t *q = buf + KAFKA_KEY_COMPACT_MAGIC_LEN + 1;
        if (tick) {
                head |= HEAD_TICK;
                for (unsigned i = 0; i < 8; i++)
                        q[i] = (uint8_t)(tick >> (8 * i));
                q += 8;
        }
        if (term) {
                head |= HEAD_TERM;
                q = put_varint(q, term);
        }
        if (has_lc) {
                head |= HEAD_LC;
                if (lc.hi) {
                        head |= HEAD_LC_HI;
                        q = put_varint(q, lc.hi);
                }
                q = put_varint(q, lc.lo);
        }
        memcpy(buf, KAFKA_KEY_COMPACT_MAGIC, KAFKA_KEY_COMPACT_MAGIC_LEN);
        buf[KAFKA_KEY_COMPACT_MAGIC_LEN] = head;
        return (size_t)(q - buf);
}

/* A varint in its shortest form of at most 10 bytes at *@pp (before @end)
 * into *@ret; false if cut, too long or padded. */
static bool get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *ret)
{
        const uint8_t *p = *pp;
        uint64_t v = 0;
        for (unsigned i = 0; i < 10 && p < end; i++) {
                uint8_t b = *p++;
                if (i == 9 && b > 1)
                        return false;   /* past 64 bits */
                v |= (uint64_t)(b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        if (b == 0 && i > 0)
                                return false;   /* not the shortest form */
                        *pp = p;
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/* A protobuf varint field (omitted at 0, as utility/envelope.c writes it). */
static inline uint8_t *put_field(uint8_t *q, unsigned field, uint64_t v)
{
        if (!v)
                return q;
        *q++ = (uint8_t)(field << 3);
        return put_varint(q, v);
}

/* A compact key's fields (compact_parse). */
struct compact {
        unsigned type;
        bool has_lc;
        uint64_t tick, term, lc_hi, lc_lo;
};

/* Parse the compact key @k/@len, whose head byte is at @k[@off] (after one
 * of the two prefixes; it is there), into @c, refusing what no encoder
 * writes.  0 or -EBADMSG. */
static int compact_parse(const uint8_t *k, size_t len, size_t off, struct compact *c,
                         wal_error **reterr)
{
        const uint8_t *p = k + off, *end = k + len;
        uint8_t head = *p++;
        c->type = head & HEAD_TYPE;
        c->has_lc = head & HEAD_LC;
        c->tick = c->term = c->lc_hi = c->lc_lo = 0;
        if ((head & HEAD_RESERVED) || c->type < 1 || c->type > WAL_MSG_TYPE_MAX ||
            ((head & HEAD_LC_HI) && !(head & HEAD_LC)))
                return wal_error_set(reterr, -EBADMSG, 0, "compact key: bad head byte 0x%02x",
                                     head);
        if (head & HEAD_TICK) {
                if (end - p < 8)
                        return wal_error_set(reterr, -EBADMSG, 0, "compact key: tick cut short");
                for (unsigned i = 0; i < 8; i++)
                        c->tick |= (uint64_t)p[i] << (8 * i);
                p += 8;
                if (!c->tick)
                        return wal_error_set(reterr, -EBADMSG, 0, "compact key: zero tick");
        }
        if ((head & HEAD_TERM) && (!get_varint(&p, end, &c->term) || !c->term))
                return wal_error_set(reterr, -EBADMSG, 0, "compact key: bad term");
        if ((head & HEAD_LC_HI) && (!get_varint(&p, end, &c->lc_hi) || !c->lc_hi))
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "compact key: bad last-confirmed high word");
        if ((head & HEAD_LC) && !get_varint(&p, end, &c->lc_lo))
                return wal_error_set(reterr, -EBADMSG, 0, "compact key: bad last-confirmed ID");
        if ((head & HEAD_LC) && c->lc_hi == UINT64_MAX && c->lc_lo == UINT64_MAX)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "compact key: last-confirmed ID is the none value");
        if (p != end)
                return wal_error_set(reterr, -EBADMSG, 0,
                                     "compact key: %zu bytes after its last field",
                                     (size_t)(end - p));
        return 0;
}

static inline bool has_prefix(const uint8_t *k, size_t len, const char *pfx, size_t plen)
{
        return k && len >= plen && memcmp(k, pfx, plen) == 0;
}

enum key_kind { KEY_FOREIGN, KEY_FULL, KEY_COMPACT };

/* Which layout the key @key/@len is in, refusing what no encoder writes:
 * KEY_FULL (its envelope at *@env, *@env_len bytes), KEY_COMPACT (its
 * fields in @c), KEY_FOREIGN (not ours), or -EBADMSG.  The one place that
 * says which keys are ours, for both readers below. */
static int key_classify(const uint8_t *k, size_t len, struct compact *c, const uint8_t **env,
                        size_t *env_len, wal_error **reterr)
{
        size_t head_off;
        if (has_prefix(k, len, KAFKA_KEY_MAGIC, KAFKA_KEY_MAGIC_LEN)) {
                if (len == KAFKA_KEY_MAGIC_LEN)
                        return wal_error_set(reterr, -EBADMSG, 0, "empty envelope in the key");
                if (k[KAFKA_KEY_MAGIC_LEN] != (uint8_t)KAFKA_KEY_COMPACT_MAGIC[KAFKA_KEY_MAGIC_LEN]) {
                        *env = k + KAFKA_KEY_MAGIC_LEN;
                        *env_len = len - KAFKA_KEY_MAGIC_LEN;
                        return KEY_FULL;
                }
                if (len == KAFKA_KEY_COMPACT_MAGIC_LEN)
                        return wal_error_set(reterr, -EBADMSG, 0, "compact key: no head byte");
                head_off = KAFKA_KEY_COMPACT_MAGIC_LEN;
        } else if (has_prefix(k, len, KAFKA_KEY_COMPACT_V0_MAGIC,
                              KAFKA_KEY_COMPACT_V0_MAGIC_LEN) &&
                   len > KAFKA_KEY_COMPACT_V0_MAGIC_LEN) {
                head_off = KAFKA_KEY_COMPACT_V0_MAGIC_LEN;
        } else {
                return KEY_FOREIGN;
        }
        int r = compact_parse(k, len, head_off, c, reterr);
        return r < 0 ? r : KEY_COMPACT;
}

int kafka_key_envelope(const void *key, size_t key_len, uint8_t *buf,
                       const uint8_t **ret_env, size_t *ret_len, wal_error **reterr)
{
        *ret_env = NULL;
        *ret_len = 0;
        struct compact c = { 0 };
        int kind = key_classify(key, key_len, &c, ret_env, ret_len, reterr);
        if (kind != KEY_COMPACT)
                return kind < 0 ? kind : kind == KEY_FULL;
        /* The full layout's envelope, field by field as utility/envelope.c
         * writes it (version 1, type 2, tick 5, term 6, has_lc 7, lc 8/9). */
        uint8_t *q = put_field(buf, 1, WALU_ENVELOPE_VERSION);
        q = put_field(q, 2, c.type);
        q = put_field(q, 5, c.tick);
        q = put_field(q, 6, c.term);
        if (c.has_lc) {
                q = put_field(q, 7, 1);
                q = put_field(q, 8, c.lc_hi);
                q = put_field(q, 9, c.lc_lo);
        }
        *ret_env = buf;
        *ret_len = (size_t)(q - buf);
        return 1;
}

int kafka_key_decode(const void *key, size_t key_len, const void *payload, size_t payload_len,
                     wal_msg **ret, wal_error **reterr)
{
        struct compact c = { 0 };
        const uint8_t *env = NULL;
        size_t env_len = 0;
        int r = key_classify(key, key_len, &c, &env, &env_len, reterr);
        if (r < 0 || r == KEY_FOREIGN)
                return r;
        if (r == KEY_FULL) {
                r = walu_envelope_decode(env, env_len, payload, payload_len, ret, reterr);
                return r < 0 ? r : 1;
        }
        /* What walu_envelope_decode() does with the same fields. */
        wal_msg *m = NULL;
        if ((r = wal_msg_new((enum wal_msg_type)c.type, payload, payload_len, &m)) < 0)
                return wal_error_set(reterr, r, 0, "compact key: %zu-byte payload: %s",
                                     payload_len, wal_strerror(r));
        wal_msg_set_time_tick(m, c.tick);
        wal_msg_set_term(m, (int64_t)c.term);
        if (c.has_lc)
                wal_msg_set_last_confirmed(m, WAL_MSGID(c.lc_hi, c.lc_lo));
        *ret = m;
        return 1;
}
