/* SPDX-License-Identifier: MIT */
/*
 * utility/envelope.h: the message envelope codec.
 *
 * The envelope is everything of a wal_msg except its payload (type,
 * properties, vchannel, time tick, term, last-confirmed ID, transaction
 * fields), as the protobuf message in utility/envelope.proto.  Backends store
 * envelope and payload side by side (local: in one frame; Redis: two stream
 * fields; Kafka: properties also as record headers).  Decoding never trusts
 * its input: sizes are checked before anything is allocated and garbage
 * yields -EBADMSG, never a crash.
 */
#ifndef WALU_ENVELOPE_H
#define WALU_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>

/* Hard cap on an encoded envelope; a larger one is refused as corrupt. */
#define WALU_ENVELOPE_MAX (1u << 20)

/* Envelope format version written into every envelope. */
#define WALU_ENVELOPE_VERSION 1

/* @returns the encoded size of @m's envelope. */
size_t walu_envelope_size(const wal_msg *m);

/*
 * Encode @m's envelope into @buf (borrowed, @len bytes).
 * @returns the number of bytes written, -ENOSPC if @len is too small,
 *          -EMSGSIZE above WALU_ENVELOPE_MAX, -EINVAL for NULL.
 */
int walu_envelope_encode(const wal_msg *m, uint8_t *buf, size_t len);

/*
 * Build a mutable message from an envelope and a payload (both borrowed and
 * copied).  The caller freezes it with the record's ID (wal_msg_freeze).
 * @env may be NULL with @env_len 0: a record written by a foreign producer,
 * which reads back as a plain data message.
 * @returns 0, -EBADMSG (undecodable, over the caps, unknown version, bad
 *          type), -ENOMEM.  The error names what was wrong.
 */
int walu_envelope_decode(const uint8_t *env, size_t env_len, const void *payload,
                         size_t payload_len, wal_msg **ret, wal_error **reterr);

/*
 * The same contract as walu_envelope_decode(), through protobuf-c's unpack:
 * the reference the hand-written decoder is compared against by the
 * differential tests.  The library itself does not call it.
 */
int walu_envelope_decode_protobuf(const uint8_t *env, size_t env_len, const void *payload,
                                  size_t payload_len, wal_msg **ret, wal_error **reterr);

/*
 * Check the envelope @env/@env_len (borrowed) exactly as
 * walu_envelope_decode() does, without building a message: fill the
 * envelope fields of @v (type, time tick, term, last confirmed, transaction,
 * property count, vchannel and env as views into @env).  The ID and payload
 * of @v are left alone.  @env NULL with @env_len 0 is a foreign record (a
 * plain data message).
 * @returns 0, -EBADMSG (the same envelopes the decoder refuses), -EINVAL.
 */
int walu_envelope_view(const uint8_t *env, size_t env_len, struct wal_msg_view *v,
                       wal_error **reterr);

/*
 * One varint at *@pp (inside [@lo, @end)) into *@ret, for the inline reader
 * below: values of up to 9 bytes (a time tick of ms << 18 takes 9), read
 * with one 8-byte load when [@lo, @end) holds 8 bytes (those from *@pp on,
 * or, near @end, the last 8 shifted down).  Reads exactly as envelope.c's
 * plain_field() does (7 bits a byte, little end first, no canonical-form
 * check).  @returns false for a value of 10 bytes, one cut by @end, or when
 * it cannot tell: the caller then takes the general path, which decides.
 */
static inline bool walu_envelope_varint_(const uint8_t **pp, const uint8_t *lo,
                                         const uint8_t *end, uint64_t *ret)
{
        const uint8_t *p = *pp;
        if (p >= end)
                return false;
        if (*p < 0x80) {
                /* one byte: the usual term, flags and small IDs */
                *ret = *p;
                *pp = p + 1;
                return true;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (end - lo >= 8) {
                uint64_t x;
                if (end - p >= 8) {
                        memcpy(&x, p, 8);
                } else {
                        /* the last 8 bytes, those before p shifted out; the
                         * bytes past end read as continuations (none ends) */
                        unsigned sh = 8 * (unsigned)(8 - (end - p));
                        memcpy(&x, end - 8, 8);
                        x = (x >> sh) | (0x8080808080808080u << (64 - sh));
                }
                /* bit 7 of each byte that ends a varint */
                uint64_t stop = ~x & 0x8080808080808080u;
                uint64_t keep = stop ? stop ^ (stop - 1) : ~(uint64_t)0;
                x &= keep & 0x7f7f7f7f7f7f7f7fu;
                x = ((x & 0x7f007f007f007f00u) >> 1) | (x & 0x007f007f007f007fu);
                x = ((x & 0x3fff00003fff0000u) >> 2) | (x & 0x00003fff00003fffu);
                x = ((x & 0x0fffffff00000000u) >> 4) | (x & 0x000000000fffffffu);
                if (stop) {
                        *pp = p + (__builtin_ctzll(stop) >> 3) + 1;
                        *ret = x;
                        return true;
                }
                /* 8 bytes with the continuation bit: a ninth that ends it
                 * (read as the top byte of a word, so that a spill of it is
                 * a whole word: a byte store reloaded as a word stalls) */
                if (end - p < 9)
                        return false;
                uint64_t ninth;
                memcpy(&ninth, p + 1, 8);
                ninth >>= 56;
                if (ninth & 0x80)
                        return false;
                *ret = x | ninth << 56;
                *pp = p + 9;
                return true;
        }
#else
        (void)lo;
#endif
        uint64_t x = 0;
        for (unsigned i = 0; i < 9; i++) {
                if (p == end)
                        return false;
                unsigned b = *p++;
                x |= (uint64_t)(b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *ret = x;
                        *pp = p;
                        return true;
                }
        }
        return false;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The low 7 bits of each byte of @x, byte 0 lowest: the value of a varint
 * of up to 8 bytes once its continuation bits are known. */
static inline uint64_t walu_envelope_compress7_(uint64_t x)
{
        x &= 0x7f7f7f7f7f7f7f7fu;
        x = ((x & 0x7f007f007f007f00u) >> 1) | (x & 0x007f007f007f007fu);
        x = ((x & 0x3fff00003fff0000u) >> 2) | (x & 0x00003fff00003fffu);
        x = ((x & 0x0fffffff00000000u) >> 4) | (x & 0x000000000fffffffu);
        return x;
}

/*
 * The adaptor's stamp as it comes from a clock: version 1, a known type,
 * a time tick of exactly 9 varint bytes (any tick from 2^56 on, as ms << 18
 * is), a one-byte term, has_lc, and last confirmed (0, lo) with lo absent
 * or of 1-8 varint bytes ending the envelope: 18 or 20-27 bytes, every
 * field at a fixed offset.  Read with independent loads, no walk from field
 * to field (the walk's chain of dependent loads measured about 18 ns a
 * record on the replay of 100-byte records).  Called by
 * walu_envelope_view_inline in front of walu_envelope_view_fast, always
 * inlined (placed inside walu_envelope_view_fast it made that function too
 * large for the compiler to inline: a call per record).  @returns false for
 * anything else (walu_envelope_view_fast reads it), with @v untouched.
 */
static inline __attribute__((always_inline)) bool
walu_envelope_view_stamp_(const uint8_t *env, size_t env_len, struct wal_msg_view *v)
{
        if (!env || env_len < 18 || env_len > 27 || env_len == 19 || env[0] != 0x08 ||
            env[1] != WALU_ENVELOPE_VERSION || env[2] != 0x10 || env[3] < WAL_MSG_DATA ||
            env[3] > WAL_MSG_TYPE_MAX)
                return false;
        uint64_t x, y;
        memcpy(&x, env + 5, 8);
        memcpy(&y, env + env_len - 8, 8);
        if (env[4] != 0x28 || (x & 0x8080808080808080u) != 0x8080808080808080u ||
            env[13] >= 0x80 || env[14] != 0x30 || env[15] >= 0x80 || env[16] != 0x38 ||
            env[17] != 0x01)
                return false;
        uint64_t lo = 0;
        if (env_len > 18) {
                /* lo's n bytes are the last n of the envelope: y shifted */
                unsigned n = (unsigned)(env_len - 19);
                y >>= 8 * (8 - n);
                uint64_t cont = 0x8080808080808080u & ((UINT64_C(1) << (8 * (n - 1))) - 1);
                if (env[18] != 0x48 || (y & 0x8080808080808080u) != cont)
                        return false;
                lo = walu_envelope_compress7_(y);
        }
        v->type = (enum wal_msg_type)env[3];
        v->time_tick = walu_envelope_compress7_(x) | (uint64_t)env[13] << 56;
        v->term = (int64_t)env[15];
        v->last_confirmed = WAL_MSGID(0, lo);
        v->txn_id = 0;
        v->txn_keepalive_ms = 0;
        v->n_props = 0;
        v->vchannel = NULL;
        v->vchannel_len = 0;
        v->env = env;
        v->env_len = env_len;
        return true;
}
#endif

/*
 * The view of the envelopes the encoder writes for messages without
 * properties, vchannel or unknown fields, read inline: version 1 and a known
 * type as the first 4 bytes (tag 1, tag 2, one byte each), then any of the
 * integer fields 5 (time tick), 6 (term), 7 (has_lc, the byte 1), 8, 9
 * (last confirmed), 10, 11 (transaction) once each in that order, all
 * varints: a bare message (4 bytes) and what the adaptor stamps on every
 * message (1, 2, 5, 6, 7, [8], 9: 20-23 bytes).  Fills @v as
 * walu_envelope_view() would (envelope fields and env; ID and payload
 * alone).  @returns false for anything else, which is not necessarily
 * invalid (@v may then have been written): the caller takes
 * walu_envelope_view(), which decides and names the fault.
 */
static inline bool walu_envelope_view_fast(const uint8_t *env, size_t env_len,
                                           struct wal_msg_view *v)
{
        if (!env || env_len < 4 || env[0] != 0x08 || env[1] != WALU_ENVELOPE_VERSION ||
            env[2] != 0x10 || env[3] < WAL_MSG_DATA || env[3] > WAL_MSG_TYPE_MAX)
                return false;
        const uint8_t *p = env + 4, *end = env + env_len;
        uint64_t tick = 0, term = 0, lc_hi = 0, lc_lo = 0, txn = 0, keepalive = 0;
        bool has_lc = false;
#define WALU_ENVELOPE_FIELD_(tag, var)                                                  \
        if (p < end && *p == (tag)) {                                                   \
                p++;                                                                    \
                if (!walu_envelope_varint_(&p, env, end, &(var)))                       \
                        return false;                                                   \
        }
        WALU_ENVELOPE_FIELD_(0x28, tick)
        WALU_ENVELOPE_FIELD_(0x30, term)
        if (end - p >= 2 && p[0] == 0x38 && p[1] == 0x01) {
                has_lc = true;
                p += 2;
        }
        WALU_ENVELOPE_FIELD_(0x40, lc_hi)
        WALU_ENVELOPE_FIELD_(0x48, lc_lo)
        WALU_ENVELOPE_FIELD_(0x50, txn)
        WALU_ENVELOPE_FIELD_(0x58, keepalive)
#undef WALU_ENVELOPE_FIELD_
        if (p != end)
                return false;
        v->type = (enum wal_msg_type)env[3];
        v->time_tick = tick;
        v->term = (int64_t)term;
        v->last_confirmed = has_lc ? WAL_MSGID(lc_hi, lc_lo) : WAL_MSGID_NONE;
        v->txn_id = txn;
        v->txn_keepalive_ms = (uint32_t)keepalive;
        v->n_props = 0;
        v->vchannel = NULL;
        v->vchannel_len = 0;
        v->env = env;
        v->env_len = env_len;
        return true;
}

/*
 * walu_envelope_view() with the common envelopes inline (the adaptor's
 * stamp from a clock at fixed offsets: walu_envelope_view_stamp_; then
 * walu_envelope_view_fast: a bare message's 4 bytes, the adaptor's 20-23);
 * anything else goes to walu_envelope_view().  For per-record loops (a
 * replay of small records); @v is filled as walu_envelope_view() fills it.
 */
static inline __attribute__((always_inline)) int
walu_envelope_view_inline(const uint8_t *env, size_t env_len, struct wal_msg_view *v,
                          wal_error **reterr)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (v && walu_envelope_view_stamp_(env, env_len, v))
                return 0;
#endif
        if (v && walu_envelope_view_fast(env, env_len, v))
                return 0;
        return walu_envelope_view(env, env_len, v, reterr);
}

/*
 * Property @i of the envelope @env/@env_len (already checked by
 * walu_envelope_view): key and value as views into @env.
 * @returns 0, -ERANGE (fewer properties), -EBADMSG (malformed).
 */
int walu_envelope_prop_at(const uint8_t *env, size_t env_len, size_t i, const uint8_t **key,
                          size_t *key_len, const uint8_t **value, size_t *value_len);

#endif /* WALU_ENVELOPE_H */
