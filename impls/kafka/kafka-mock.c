/* SPDX-License-Identifier: MIT */
/*
 * impls/kafka/kafka-mock.c: host an in-process librdkafka mock cluster.
 *
 * librdkafka 2.0.2 ships a mock Kafka cluster (rdkafka_mock.h) that speaks
 * the real protocol on loopback TCP ports, so the backend's own code paths
 * run unchanged against it.  A mock cluster needs an owning rd_kafka_t; a
 * plain producer handle with no bootstrap servers serves, and its one
 * "no bootstrap.servers" warning goes to the log hook like every other
 * librdkafka line (nothing is printed).
 *
 * Limits of the mock that matter to libwal (checked on this machine, see
 * the backend's top comment in kafka.c): 5 MiB / 100 000 message sets per
 * partition with older data dropped silently, no transactional fencing, no
 * CreateTopics.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <wal/wal-log.h>
#include "utility/walu.h"
#include "kafka-internal.h"

struct kafka_mock_host {
        rd_kafka_t *owner;            /* the handle the cluster belongs to */
        rd_kafka_mock_cluster_t *mc;
        char *bootstraps;             /* owned copy */
};

static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)rk;
        walu_log(level <= 3 ? WAL_LOG_ERROR : level <= 5 ? WAL_LOG_WARNING : WAL_LOG_DEBUG,
                 "kafka mock: %s: %s", fac, buf);
}

int kafka_mock_host_start(int brokers, struct kafka_mock_host **ret, wal_error **reterr)
{
        if (!ret || brokers < 1 || brokers > 16)
                return wal_error_set(reterr, -EINVAL, 0,
                                     "kafka mock: broker count %d is not in 1..16", brokers);
        struct kafka_mock_host *h = calloc(1, sizeof(*h));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (!h || !conf) {
                free(h);
                if (conf)
                        rd_kafka_conf_destroy(conf);
                return wal_error_set(reterr, -ENOMEM, 0, "kafka mock: out of memory");
        }
        char errstr[512];
        rd_kafka_conf_set_log_cb(conf, mock_log_cb);
        h->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!h->owner) {
                rd_kafka_conf_destroy(conf);
                free(h);
                return wal_error_set(reterr, -EIO, 0, "kafka mock: cannot make the owner handle: %s",
                                     errstr);
        }
        h->mc = rd_kafka_mock_cluster_new(h->owner, brokers);
        if (!h->mc) {
                rd_kafka_destroy(h->owner);
                free(h);
                return wal_error_set(reterr, -EIO, 0, "kafka mock: rd_kafka_mock_cluster_new failed");
        }
        h->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(h->mc));
        if (!h->bootstraps) {
                kafka_mock_host_stop(h);
                return wal_error_set(reterr, -ENOMEM, 0, "kafka mock: out of memory");
        }
        *ret = h;
        return 0;
}

const char *kafka_mock_host_bootstraps(const struct kafka_mock_host *h)
{
        return h ? h->bootstraps : NULL;
}

rd_kafka_mock_cluster_t *kafka_mock_host_cluster(const struct kafka_mock_host *h)
{
        return h ? h->mc : NULL;
}

void kafka_mock_host_stop(struct kafka_mock_host *h)
{
        if (!h)
                return;
        if (h->mc)
                rd_kafka_mock_cluster_destroy(h->mc);
        if (h->owner)
                rd_kafka_destroy(h->owner);
        free(h->bootstraps);
        free(h);
}
