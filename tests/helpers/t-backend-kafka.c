/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backend-kafka.c: the Kafka backend's fixture.
 *
 * setup starts an in-process librdkafka mock cluster (one broker on a random
 * 127.0.0.1 port, impls/kafka/kafka-internal.h) and points the backend at
 * it; teardown stops it.  With WAL_TEST_KAFKA_BOOTSTRAP set (host:port,...)
 * the suites run against that real cluster instead; channel names are
 * unique per run (t_unique_name), so a shared cluster is fine.  The mock keeps at most 5 MiB per partition (older
 * data silently dropped), so suites using this fixture keep each channel
 * well below that.  Fetch waits are short (10 ms) because the mock answers
 * an empty fetch only after fetch.wait.max.ms.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include <wal/wal-config.h>
#include "impls/kafka/kafka-internal.h"
#include "t-helpers.h"
#include "wal-build-config.h"

#if HAVE_KAFKA

int t_fixture_kafka_setup(wal_config *cfg, void **state);
void t_fixture_kafka_teardown(void *state);

int t_fixture_kafka_setup(wal_config *cfg, void **state)
{
        struct kafka_mock_host *h = NULL;
        const char *real = getenv("WAL_TEST_KAFKA_BOOTSTRAP");
        int r;
        if (!real || !*real) {
                if ((r = kafka_mock_host_start(1, &h, NULL)) < 0)
                        return r;
        }
        if ((r = wal_config_set(cfg, "backend", "kafka", NULL)) < 0 ||
            (r = wal_config_set(cfg, "kafka.bootstrap.servers",
                                h ? kafka_mock_host_bootstraps(h) : real, NULL)) < 0 ||
            (r = wal_config_set(cfg, "kafka.fetch.wait.max.ms", "10", NULL)) < 0 ||
            (r = wal_config_set(cfg, "kafkawal.open_timeout", "10s", NULL)) < 0) {
                kafka_mock_host_stop(h);
                return r;
        }
        *state = h;   /* NULL with a real cluster: nothing to stop */
        return 0;
}

void t_fixture_kafka_teardown(void *state)
{
        kafka_mock_host_stop(state);
}

#endif /* HAVE_KAFKA */
