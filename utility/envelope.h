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

#include <stddef.h>
#include <stdint.h>

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
 * walu_envelope_view() with the commonest envelope inline: the 4 bytes the
 * encoder writes for a message with no field set but version and type
 * (tag 1, version 1, tag 2, a known type), which view_plain() in
 * envelope.c reads to the same view.  Anything else goes to
 * walu_envelope_view().  For per-record loops (a replay of small records);
 * @v is filled as walu_envelope_view() fills it.
 */
static inline int walu_envelope_view_inline(const uint8_t *env, size_t env_len,
                                            struct wal_msg_view *v, wal_error **reterr)
{
        if (env_len == 4 && env && env[0] == 0x08 && env[1] == WALU_ENVELOPE_VERSION &&
            env[2] == 0x10 && env[3] >= WAL_MSG_DATA && env[3] <= WAL_MSG_TYPE_MAX) {
                v->type = (enum wal_msg_type)env[3];
                v->time_tick = 0;
                v->term = 0;
                v->last_confirmed = WAL_MSGID_NONE;
                v->txn_id = 0;
                v->txn_keepalive_ms = 0;
                v->n_props = 0;
                v->vchannel = NULL;
                v->vchannel_len = 0;
                v->env = env;
                v->env_len = 4;
                return 0;
        }
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
