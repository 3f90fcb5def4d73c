/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-mock-kafka.c: `walctl mock-kafka [--brokers N]`.
 *
 * Hosts a librdkafka mock cluster (rdkafka_mock.h: the real Kafka protocol on
 * loopback TCP ports, data in memory) so that other processes (walctl -b
 * kafka, kcat, tests) have a Kafka to talk to without a JVM.  The one command
 * of walctl that uses librdkafka directly: the library's own mock host is
 * internal to libwal, and walctl keeps to the public API.
 *
 * Protocol with the caller: the first line on standard output is
 * "bootstrap.servers=HOST:PORT[,...]", flushed at once; then the process
 * serves until SIGINT or SIGTERM and exits 0.  librdkafka's log lines (the
 * owner handle's "no bootstrap.servers" warning among them) go to standard
 * error only with -v.  Limits of the mock in librdkafka 2.0: 5 MiB / 100 000
 * message sets per partition (older data is dropped), no transactions
 * isolation, no offsets-for-times.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "walctl.h"

static int verbosity;

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)rk;
        if (verbosity > 0 || (level <= 3 && verbosity == 0))
                fprintf(stderr, "walctl: mock-kafka: %s: %s\n", fac, buf);
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "brokers", required_argument, NULL, 'B' },
                { NULL, 0, NULL, 0 },
        };
        uint64_t brokers = 1;
        for (;;) {
                int c = walctl_getopt("mock-kafka", argc, argv, "", longopts);
                if (c == -1)
                        break;
                if (c != 'B')
                        return WALCTL_EXIT_USAGE;
                if (walctl_parse_u64(optarg, 1, 16, &brokers) < 0)
                        return walctl_usage_error("mock-kafka --brokers", "'%s' is not a "
                                                  "count in 1..16", optarg);
        }
        if (walctl_no_operands("mock-kafka", argc, argv, optind))
                return WALCTL_EXIT_USAGE;
        verbosity = w->verbosity;

        int sigfd = walctl_signal_fd();
        if (sigfd < 0)
                return walctl_fail("mock-kafka: signals", sigfd, NULL);

        char errstr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!owner) {
                rd_kafka_conf_destroy(conf);
                close(sigfd);
                walctl_error("mock-kafka", "cannot make the owner handle: %s", errstr);
                return WALCTL_EXIT_UNAVAILABLE;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, (int)brokers);
        if (!mc) {
                rd_kafka_destroy(owner);
                close(sigfd);
                walctl_error("mock-kafka", "librdkafka could not start a mock cluster");
                return WALCTL_EXIT_UNAVAILABLE;
        }
        walctl_out_printf("bootstrap.servers=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        /* Nobody reading the address (EPIPE) means nobody will connect: stop. */
        int rc = walctl_out_finish("mock-kafka");
        while (!rc && !walctl_out_error()) {
                struct pollfd pfd = { .fd = sigfd, .events = POLLIN };
                int pr = poll(&pfd, 1, -1);
                if (pr < 0 && errno != EINTR) {
                        rc = walctl_fail("mock-kafka", -errno, NULL);
                        break;
                }
                if (pr > 0 && walctl_signal_pending(sigfd))
                        break;
        }
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(owner);
        close(sigfd);
        return rc;
}

const struct walctl_command walctl_cmd_mock_kafka = {
        .name = "mock-kafka",
        .args = "[--brokers N]",
        .summary = "host a librdkafka mock Kafka cluster on loopback",
        .help = "Host a librdkafka mock cluster of N brokers (default 1, at most 16) on\n"
                "127.0.0.1 with random ports.  The first line on standard output is\n"
                "  bootstrap.servers=HOST:PORT[,HOST:PORT...]\n"
                "then walctl serves until SIGINT or SIGTERM (exit status 0).  Data lives\n"
                "in memory; each partition keeps at most 5 MiB or 100 000 message sets.\n"
                "Topics it creates on first use have 4 partitions, and a channel is\n"
                "partition 0 only: produce with kcat -P -p 0 (walctl warns on stderr\n"
                "about a channel's topic with several partitions).\n"
                "\n"
                "Example:\n"
                "  walctl mock-kafka > mock.txt & sleep 1\n"
                "  bs=$(sed -n 's/^bootstrap.servers=//p' mock.txt)\n"
                "  seq 3 | walctl -b kafka -X kafka.bootstrap.servers=$bs append orders\n"
                "  echo four | kcat -P -b $bs -t wal-orders -p 0\n"
                "  kill %1\n",
        .flags = 0,
        .run = run,
};
