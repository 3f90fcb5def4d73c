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
 *
 * Nagle.  The mock's broker sockets keep Nagle's algorithm on (its owner's
 * socket.nagle.disable does not reach them), so a response written in
 * pieces waited for the client's delayed ACK: about 40 ms on one request
 * in three or so (a Fetch or ListOffsets round trip of 44 ms where the rest
 * take 0.1 ms, librdkafka debug=protocol), which made the first record of a
 * replay arrive after ~45 ms at random, on a plain librdkafka consumer as
 * much as on a scanner.  Linux hands TCP_NODELAY from a listening socket
 * down to the sockets it accepts, so kafka_mock_host_start() sets it on the
 * mock's listeners (found by their ports among this process's descriptors)
 * before anyone connects.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

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

/* Is @port one of the bootstrap list @bs ("127.0.0.1:P1,127.0.0.1:P2")? */
static bool mock_port_listed(const char *bs, unsigned port)
{
        char want[16];
        snprintf(want, sizeof(want), ":%u", port);
        size_t wl = strlen(want);
        for (const char *p = strstr(bs, want); p; p = strstr(p + 1, want))
                if (p[wl] == ',' || p[wl] == '\0')
                        return true;
        return false;
}

/* TCP_NODELAY on every listening TCP socket of this process whose port is
 * in @bs (see "Nagle" above).  @returns how many were set. */
static int mock_listeners_nodelay(const char *bs)
{
        struct rlimit rl;
        int maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ?
                    (int)rl.rlim_cur : 65536;
        int n = 0;
        for (int fd = 0; fd < maxfd; fd++) {
                struct sockaddr_in sa;
                socklen_t sl = sizeof(sa);
                int listening = 0;
                socklen_t ol = sizeof(listening);
                if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sl != sizeof(sa) ||
                    sa.sin_family != AF_INET ||
                    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) < 0 ||
                    !listening || !mock_port_listed(bs, ntohs(sa.sin_port)))
                        continue;
                int one = 1;
                if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
                        n++;
        }
        return n;
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
        int nd = mock_listeners_nodelay(h->bootstraps);
        if (nd != brokers)
                walu_log(WAL_LOG_WARNING, "kafka mock: TCP_NODELAY set on %d of %d broker "
                         "listeners (responses may wait for delayed ACKs)", nd, brokers);
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
