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

#include <wal/wal-error.h>

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
