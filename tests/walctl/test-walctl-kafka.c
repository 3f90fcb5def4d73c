/* SPDX-License-Identifier: MIT */
/*
 * tests/walctl/test-walctl-kafka.c: `walctl mock-kafka`, and the data
 * commands on the Kafka backend against it: one walctl process hosts the
 * cluster, others append and read through it over loopback, as a user
 * without a broker would.  Built only with the Kafka backend.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "t-walctl.h"

static pid_t mock_pid = -1;
static int mock_out = -1, mock_err = -1;
static char servers[600];     /* "kafka.bootstrap.servers=..." */

static void start_mock(void)
{
        mock_pid = t_walctl_spawn(T_ARGS("mock-kafka", "--brokers", "3"), NULL, &mock_out,
                                  &mock_err);
        char line[512];
        cr_assert_geq(t_read_line(mock_out, line, sizeof(line), 20000), 0,
                      "mock-kafka printed no first line");
        cr_assert_eq(strncmp(line, "bootstrap.servers=", 18), 0, "first line: %s", line);
        /* Three brokers: three HOST:PORT, all on loopback. */
        int commas = 0;
        for (const char *p = line; *p; p++)
                commas += *p == ',';
        cr_assert_eq(commas, 2, "%s", line);
        cr_assert(strstr(line, "127.0.0.1:"), "%s", line);
        snprintf(servers, sizeof(servers), "kafka.%s", line);
}

static void stop_mock(void)
{
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                t_wait(mock_pid);
                close(mock_out);
                close(mock_err);
        }
        mock_pid = -1;
}

TestSuite(walctl_kafka, .init = start_mock, .fini = stop_mock, .timeout = 60);

static struct t_out kw(const char *in, const char *const *args)
{
        const char **full = t_backend_args("kafka", servers, args);
        struct t_out r = t_walctl(NULL, in, in ? strlen(in) : 0, full);
        free(full);
        return r;
}

Test(walctl_kafka, append_read_info_channels_through_the_mock)
{
        struct t_out r = kw("one\ntwo\nthree\n", T_ARGS("append", "-J", "orders"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        cr_expect_eq(t_count_lines(r.out), 3, "%s", r.out);
        t_out_free(&r);

        r = kw(NULL, T_ARGS("read", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "one\ntwo\nthree\n");
        t_out_free(&r);

        char pos[64];
        r = kw(NULL, T_ARGS("read", "-c", "2", "--show-position", "orders"));
        cr_expect_str_eq(r.out, "one\ntwo\n");
        const char *line = t_line(r.err, "position: ");
        cr_assert_not_null(line, "%s", r.err);
        snprintf(pos, sizeof(pos), "%s", line + strlen("position: "));
        t_out_free(&r);
        r = kw(NULL, T_ARGS("read", "--after", pos, "orders"));
        cr_expect_str_eq(r.out, "three\n");
        t_out_free(&r);

        r = kw(NULL, T_ARGS("info", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.out, "channel\torders\n"), "%s", r.out);
        t_out_free(&r);

        r = kw(NULL, T_ARGS("channels"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.out, "orders\n"), "%s", r.out);
        t_out_free(&r);

        r = kw(NULL, T_ARGS("read", "missing-topic"));
        cr_expect_eq(r.code, 66, "%s", r.err);
        t_out_free(&r);
}

/* truncate in the default retention mode deletes nothing: status 0, but a
 * warning says so and names the setting that deletes (it used to say
 * nothing at all); with delete_records walctl does not warn. */
Test(walctl_kafka, truncate_in_retention_mode_says_nothing_was_deleted)
{
        struct t_out r = kw("one\ntwo\n", T_ARGS("append", "-J", "trunc"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        const char *q = strstr(r.out, "\"id\":\"");
        cr_assert_not_null(q, "%s", r.out);
        char id[64];
        snprintf(id, sizeof(id), "%s", q + strlen("\"id\":\""));
        *strchr(id, '"') = '\0';
        t_out_free(&r);
        r = kw(NULL, T_ARGS("truncate", "trunc", id));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.err, "nothing was deleted") &&
                  strstr(r.err, "kafkawal.truncate=delete_records"), "%s", r.err);
        t_out_free(&r);
        r = kw(NULL, T_ARGS("read", "trunc"));
        cr_expect_str_eq(r.out, "one\ntwo\n", "retention mode deleted something");
        t_out_free(&r);
        r = kw(NULL, T_ARGS("-X", "kafkawal.truncate=delete_records", "truncate", "trunc", id));
        /* Under AddressSanitizer the status is not checked: the mock cluster
         * refuses DeleteRecords and librdkafka then leaks 176 bytes
         * (impls/kafka/kafka.c), which LeakSanitizer turns into exit 1.  Its
         * stack has no frame of ours to suppress it by (librdkafka is built
         * without frame pointers), and suppressing all of librdkafka would
         * hide our own leaks of its handles. */
#ifndef __SANITIZE_ADDRESS__
        cr_expect_eq(r.code, 0, "%s", r.err);
#endif
        cr_expect_null(strstr(r.err, "nothing was deleted: with"), "%s", r.err);
        cr_expect_not_null(strstr(r.err, "support DeleteRecords, so nothing was deleted"), "%s", r.err);
        t_out_free(&r);
}

/* The missing channel is named once, by walctl, with where Kafka looked. */
Test(walctl_kafka, missing_channel_is_named_once)
{
        struct t_out r = kw(NULL, T_ARGS("read", "nosuch"));
        cr_expect_eq(r.code, 66, "%s", r.err);
        cr_expect_str_eq(r.err, "walctl: nosuch: no such channel (kafka: no topic wal-nosuch)\n");
        cr_expect_str_empty(r.out);
        t_out_free(&r);
        r = kw(NULL, T_ARGS("info", "nosuch"));
        cr_expect_eq(r.code, 66, "%s", r.err);
        cr_expect_str_eq(r.err, "walctl: nosuch: no such channel (kafka: no topic wal-nosuch)\n");
        t_out_free(&r);
}

Test(walctl_kafka, bench_through_the_mock)
{
        struct t_out r = kw(NULL, T_ARGS("bench", "--async", "256", "--count", "2000",
                                         "--readers", "1", "--json"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        struct t_json *j = t_json_parse(r.out, r.out_len);
        cr_assert_not_null(j, "%s", r.out);
        uint64_t v;
        cr_expect(t_json_u64(j, "records", &v) && v == 2000);
        cr_expect(t_json_u64(j, "delivered", &v) && v == 2000);
        cr_expect_str_eq(t_json_str(j, "backend"), "kafka");
        t_json_free(j);
        t_out_free(&r);
}

Test(walctl_kafka, mock_kafka_exits_0_on_sigint_and_rejects_bad_counts)
{
        int out, err;
        pid_t pid = t_walctl_spawn(T_ARGS("mock-kafka"), NULL, &out, &err);
        char line[512];
        cr_assert_geq(t_read_line(out, line, sizeof(line), 20000), 0);
        cr_expect_eq(strncmp(line, "bootstrap.servers=127.0.0.1:", 28), 0, "%s", line);
        cr_expect_null(strchr(line, ','), "one broker by default: %s", line);
        kill(pid, SIGINT);
        cr_expect_eq(t_wait(pid), 0);
        char *e = t_slurp(err);
        cr_expect_str_empty(e, "quiet without -v: %s", e);
        free(e);
        close(out);
        close(err);

        struct t_out r = t_walctl(NULL, NULL, 0, T_ARGS("mock-kafka", "--brokers", "0"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        t_out_free(&r);
        r = t_walctl(NULL, NULL, 0, T_ARGS("mock-kafka", "--brokers", "17"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        t_out_free(&r);
        r = t_walctl(NULL, NULL, 0, T_ARGS("mock-kafka", "extra"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        t_out_free(&r);
}

/*
 * Interoperability with kcat, a plain Kafka client, against the same
 * mock-kafka: what walctl appends reads back in kcat as the plain payload
 * with the properties as headers, and what kcat produces reads back in
 * walctl as data messages with the headers as properties.
 */
static struct t_out run_kcat_n(const char *in, size_t in_len, const char *const *args)
{
        int pin[2], pout[2], perr[2];
        cr_assert_eq(pipe(pin), 0);
        cr_assert_eq(pipe(pout), 0);
        cr_assert_eq(pipe(perr), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                dup2(pin[0], 0);
                dup2(pout[1], 1);
                dup2(perr[1], 2);
                close(pin[1]);
                close(pout[0]);
                close(perr[0]);
                execvp("kcat", (char *const *)args);
                fprintf(stderr, "exec kcat: %s\n", strerror(errno));
                _exit(127);
        }
        close(pin[0]);
        close(pout[1]);
        close(perr[1]);
        if (in)
                cr_assert_eq(write(pin[1], in, in_len), (ssize_t)in_len);
        close(pin[1]);
        struct t_out r = { 0 };
        r.out = t_slurp(pout[0]);
        r.err = t_slurp(perr[0]);
        r.out_len = strlen(r.out);
        r.code = t_wait(pid);
        close(pout[0]);
        close(perr[0]);
        return r;
}

static uint64_t t_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct t_out run_kcat(const char *in, const char *const *args)
{
        return run_kcat_n(in, in ? strlen(in) : 0, args);
}

Test(walctl_kafka, kcat_reads_walctl_records_and_walctl_reads_kcat_records)
{
        const char *bootstrap = servers + strlen("kafka.bootstrap.servers=");

        struct t_out r = kw("alpha\nbeta\n", T_ARGS("append", "-H", "source=walctl",
                                                     "interop"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);

        /* kcat sees the plain payloads, the property as a header. */
        r = run_kcat(NULL, T_ARGS("kcat", "-C", "-b", bootstrap, "-t", "wal-interop", "-e",
                                  "-q", "-f", "%s|%h\\n"));
        cr_assert_eq(r.code, 0, "kcat -C: %s", r.err);
        cr_expect(strstr(r.out, "alpha|") && strstr(r.out, "beta|"), "kcat read:\n%s", r.out);
        const char *a = t_line(r.out, "alpha|");
        cr_assert_not_null(a, "%s", r.out);
        char first[128];
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(a, "\n"), a);
        cr_expect_str_eq(first, "alpha|source=walctl",
                         "the payload plain and the property its only header");
        t_out_free(&r);

        /* What kcat produces, walctl reads as data with its header as a property. */
        r = run_kcat("gamma\n", T_ARGS("kcat", "-P", "-b", bootstrap, "-t", "wal-interop",
                                       "-p", "0", "-H", "origin=kcat"));
        cr_assert_eq(r.code, 0, "kcat -P: %s", r.err);
        t_out_free(&r);

        r = kw(NULL, T_ARGS("read", "interop"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "alpha\nbeta\ngamma\n");
        t_out_free(&r);

        r = kw(NULL, T_ARGS("read", "--format", "json", "-o", "-1", "interop"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        struct t_json *j = t_json_parse(r.out, r.out_len);
        cr_assert_not_null(j, "%s", r.out);
        cr_expect_str_eq(t_json_str(j, "payload"), "gamma");
        cr_expect_str_eq(t_json_str(j, "type"), "data");
        const struct t_json *props = t_json_get(j, "props");
        cr_assert_not_null(props, "%s", r.out);
        cr_expect_str_eq(t_json_str(props, "origin"), "kcat");
        t_json_free(j);
        t_out_free(&r);
}

/*
 * A channel is partition 0 of its topic.  The mock cluster auto-creates
 * topics with 4 partitions, so a new user's `kcat -P` without -p spreads
 * records over partitions walctl never reads: walctl must say so on stderr
 * (naming the topic and its partition count) instead of showing a silent
 * subset.
 */
Test(walctl_kafka, a_topic_with_several_partitions_is_named_in_a_warning)
{
        const char *bootstrap = servers + strlen("kafka.bootstrap.servers=");

        struct t_out r = kw("one\n", T_ARGS("append", "parts"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);

        r = run_kcat(NULL, T_ARGS("kcat", "-L", "-b", bootstrap, "-t", "wal-parts"));
        cr_assert_eq(r.code, 0, "kcat -L: %s", r.err);
        bool several = strstr(r.out, "partition 1,") != NULL;
        t_out_free(&r);
        if (!several)
                cr_skip("the brokers created wal-parts with one partition");

        r = kw(NULL, T_ARGS("read", "parts"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "one\n");
        cr_expect(strstr(r.err, "wal-parts") && strstr(r.err, "partitions") &&
                  strstr(r.err, "partition 0"),
                  "no warning about the topic's other partitions:\n%s", r.err);
        t_out_free(&r);
}

/*
 * On Kafka a fenced writer's record can land after the new owner's first
 * tick (README, "Fencing"); scanners drop such a straggler (an older term
 * with an older tick).  When one is the last record, walctl read must end
 * as at any end made of messages readers never see (2 s without news, status
 * 0), not wait for it as owed (it waited 60 s, then exit 69).  The straggler
 * is produced by kcat with a compact key (impls/kafka/kafka-key.c: data,
 * tick 0x0101010101010101, term 1) after records of term 2.
 */
Test(walctl_kafka, read_ends_at_a_last_straggler_of_a_fenced_term)
{
        const char *bootstrap = servers + strlen("kafka.bootstrap.servers=");
        struct t_out r = kw("a\nb\n", T_ARGS("--term", "2", "append", "strag"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        static const char line[] = "\0wk\x19\x01\x01\x01\x01\x01\x01\x01\x01\x01|late\n";
        r = run_kcat_n(line, sizeof(line) - 1,
                       T_ARGS("kcat", "-P", "-b", bootstrap, "-t", "wal-strag", "-p", "0", "-K",
                              "|"));
        cr_assert_eq(r.code, 0, "kcat -P: %s", r.err);
        t_out_free(&r);

        uint64_t t0 = t_now_ms();
        r = kw(NULL, T_ARGS("read", "strag"));
        uint64_t took = t_now_ms() - t0;
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "a\nb\n");
        cr_expect_lt(took, 20000, "read took %llu ms", (unsigned long long)took);
        t_out_free(&r);
}

/* A broker nobody listens on: walctl's own error says it (69), and what
 * librdkafka reports on the way is said as warnings, each connection
 * failure once: the producer's failures arrive both as librdkafka log lines
 * (facility FAIL, level "error") and as error events, and walctl printed
 * both, as errors that even -q showed, although librdkafka retries them and
 * no call failed of them.  Under -q only walctl's error is left. */
Test(walctl_kafka, unreachable_broker_is_one_error_and_warnings_once)
{
        const char *const *args = T_ARGS("-X", "kafkawal.open_timeout=1s", "read", "foo");
        const char **full = t_backend_args("kafka", "kafka.bootstrap.servers=127.0.0.1:1", args);
        struct t_out r = t_walctl(NULL, NULL, 0, full);
        free(full);
        cr_expect_eq(r.code, 69, "%s", r.err);
        cr_expect(strstr(r.err, "walctl: backend kafka: no broker answered within 1000 ms"),
                  "%s", r.err);
        cr_expect_null(strstr(r.err, "libwal error"), "a retried failure said as an error: %s",
                       r.err);
        cr_expect_null(strstr(r.err, ": FAIL: "), "librdkafka's log line of a failure its "
                       "error event reports too: %s", r.err);
        t_out_free(&r);

        const char *const *quiet = T_ARGS("-q", "-X", "kafkawal.open_timeout=1s", "read", "foo");
        full = t_backend_args("kafka", "kafka.bootstrap.servers=127.0.0.1:1", quiet);
        r = t_walctl(NULL, NULL, 0, full);
        free(full);
        cr_expect_eq(r.code, 69, "%s", r.err);
        const char *nl = strchr(r.err, '\n');
        cr_expect(strncmp(r.err, "walctl: backend kafka: no broker answered", 41) == 0 && nl &&
                  nl[1] == '\0', "-q: more than walctl's error: %s", r.err);
        t_out_free(&r);
}
