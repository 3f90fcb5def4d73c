/* SPDX-License-Identifier: MIT */
/*
 * impls/kafka/kafka-internal.h: what the Kafka backend shares with its tests
 * and with tools (not installed).
 *
 *  - kafka_err_to_errno(): the ONE place where librdkafka error codes become
 *    libwal's negative errno values (wal/wal-error.h);
 *  - the mock-cluster host: an in-process librdkafka mock cluster (no JVM, no
 *    broker) listening on 127.0.0.1, for the test fixtures and for walctl's
 *    `mock-kafka` command.  It prints nothing: librdkafka's log lines go to
 *    libwal's log hook (wal/wal-log.h).
 *
 * This header does not include <librdkafka/rdkafka.h>, so code that only
 * hosts a cluster needs no librdkafka include path.  The typedefs below are
 * identical to librdkafka's (C11 allows repeating them).
 */
#ifndef KAFKA_INTERNAL_H
#define KAFKA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal-error.h>
#include <wal/wal-message.h>

typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;

/**
 * @brief Map a librdkafka error code (an rd_kafka_resp_err_t value) to a
 *        negative errno: 0 stays 0; timeouts -ETIMEDOUT; transport -ECONNRESET;
 *        all brokers down -ECONNREFUSED; queue full and "not enough replicas"
 *        style broker states -EAGAIN; size limits -EMSGSIZE; unknown topic or
 *        partition -ENOENT; offset out of range -ERANGE; fenced producers
 *        -ESTALE; authorisation -EACCES; purge/destroy -ECANCELED; bad
 *        arguments -EINVAL; unsupported -EOPNOTSUPP; corrupt data -EBADMSG;
 *        anything else -EIO.
 */
int kafka_err_to_errno(int rd_kafka_err);

/** @returns true if librdkafka (or the broker) may succeed when asked again. */
bool kafka_err_is_retriable(int rd_kafka_err);

/* ---- The record key (kafka-key.c, whose top comment has the format) ---- */

/* The full layout's magic, followed by the protobuf envelope. */
#define KAFKA_KEY_MAGIC "\0wal"
#define KAFKA_KEY_MAGIC_LEN 4
/* The compact layout's prefix (the full layout's magic, then a byte no
 * envelope starts with), followed by the head byte and its fields. */
#define KAFKA_KEY_COMPACT_MAGIC "\0wal\x07"
#define KAFKA_KEY_COMPACT_MAGIC_LEN 5
/* The compact layout's first prefix, read, never written (kafka-key.c). */
#define KAFKA_KEY_COMPACT_V0_MAGIC "\0wk"
#define KAFKA_KEY_COMPACT_V0_MAGIC_LEN 3
/* The longest compact key: magic, head, tick, term, lc hi and lo. */
#define KAFKA_KEY_COMPACT_MAX (KAFKA_KEY_COMPACT_MAGIC_LEN + 1 + 8 + 10 + 10 + 10)
/* The longest envelope kafka_key_envelope() makes of a compact key
 * (tags and varints of version, type, tick, term, has_lc, lc hi and lo). */
#define KAFKA_KEY_ENVELOPE_MAX 64

/**
 * @brief The compact key of @p m (borrowed) into @p buf (borrowed, at least
 *        KAFKA_KEY_COMPACT_MAX bytes).
 * @returns its length, or 0 when @p m needs the full layout (it has a
 *          property, a vchannel or a transaction field); @p buf is then
 *          left as it was.
 */
size_t kafka_key_compact(const wal_msg *m, uint8_t *buf);

/**
 * @brief The envelope a record key carries.
 * @param key, key_len  the record key (borrowed; NULL for none).
 * @param buf           KAFKA_KEY_ENVELOPE_MAX bytes (borrowed) where a
 *                      compact key's envelope is written.
 * @param ret_env, ret_len  the envelope, for walu_envelope_decode(): inside
 *                      @p key (full layout) or @p buf (compact); NULL and 0
 *                      when the key is not ours.
 * @returns 1 ours, 0 not ours (no key, or no magic: a foreign record's),
 *          -EBADMSG (a magic followed by what no encoder writes; the error
 *          says what).
 */
int kafka_key_envelope(const void *key, size_t key_len, uint8_t *buf,
                       const uint8_t **ret_env, size_t *ret_len, wal_error **reterr);

/**
 * @brief The message a record with key @p key and value @p payload (both
 *        borrowed, copied) carries, as walu_envelope_decode() makes it
 *        (mutable: the caller freezes it with the record's ID).
 * @returns 1 ours (*@p ret set), 0 not ours (nothing set: a foreign key,
 *          or none), -EBADMSG (as kafka_key_envelope() refuses, or an
 *          undecodable full-layout envelope), -ENOMEM.  The error says what.
 */
int kafka_key_decode(const void *key, size_t key_len, const void *payload, size_t payload_len,
                     wal_msg **ret, wal_error **reterr);

/* ---- Mock-cluster host ---- */

struct kafka_mock_host;

/**
 * @brief Start a mock cluster of @p brokers brokers on 127.0.0.1 (random ports).
 * @param brokers  1..16.
 * @param ret      the host (owned by the caller: kafka_mock_host_stop()).
 * @returns 0, -EINVAL (bad count, NULL @p ret), -ENOMEM, -EIO (librdkafka
 *          refused; the error says why).
 * @remark The cluster runs on librdkafka's own threads and lives until stop.
 */
int kafka_mock_host_start(int brokers, struct kafka_mock_host **ret, wal_error **reterr);

/** @returns the bootstrap list "127.0.0.1:P1,127.0.0.1:P2,..." (borrowed,
 *  valid until stop). */
const char *kafka_mock_host_bootstraps(const struct kafka_mock_host *h);

/** @returns the cluster (borrowed) for rd_kafka_mock_* fault injection. */
rd_kafka_mock_cluster_t *kafka_mock_host_cluster(const struct kafka_mock_host *h);

/** Stop the cluster and free @p h (NULL is fine).  Clients still connected
 *  see their brokers go away. */
void kafka_mock_host_stop(struct kafka_mock_host *h);

#endif /* KAFKA_INTERNAL_H */
