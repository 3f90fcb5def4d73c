/* SPDX-License-Identifier: MIT */
/*
 * tests/walctl/test-walctl-redis.c: the data commands of walctl on the
 * Redis Streams backend, against a private redis-server started per test on
 * a free loopback port (stopped by PID), and the "backend unavailable" exit
 * code against a port nothing listens on.  Built only with the Redis backend;
 * redis-server is installed by scripts/install-deps.sh.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "t-walctl.h"

static pid_t server = -1;
static char *server_dir;
static char url[128];          /* "redis.url=redis://127.0.0.1:PORT/0" */
static int port;

static void setup(void)
{
        server = t_redis_start(&port, &server_dir);
        cr_assert_gt(server, 0, "redis-server did not start (scripts/install-deps.sh "
                     "installs it)");
        snprintf(url, sizeof(url), "redis.url=redis://127.0.0.1:%d/0", port);
}

static void teardown(void)
{
        t_redis_stop(server, server_dir);
        server = -1;
        server_dir = NULL;
}

TestSuite(walctl_redis, .init = setup, .fini = teardown, .timeout = 60);

static struct t_out rw(const char *in, const char *const *args)
{
        const char **full = t_backend_args("redis", url, args);
        struct t_out r = t_walctl(NULL, in, in ? strlen(in) : 0, full);
        free(full);
        return r;
}

Test(walctl_redis, append_read_resume_info_channels_truncate)
{
        struct t_out r = rw("a\nb\nc\nd\n", T_ARGS("append", "-J", "-H", "k=v", "orders"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        cr_assert_eq(t_count_lines(r.out), 4, "%s", r.out);
        /* Redis IDs are MS-SEQ and come back as such. */
        const char *nl = strchr(r.out, '\n');
        struct t_json *ack = t_json_parse(r.out, (size_t)(nl - r.out));
        cr_assert_not_null(ack, "%s", r.out);
        cr_expect(strchr(t_json_str(ack, "id"), '-'), "a stream entry ID: %s",
                  t_json_str(ack, "id"));
        t_json_free(ack);
        t_out_free(&r);

        r = rw(NULL, T_ARGS("read", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "a\nb\nc\nd\n");
        t_out_free(&r);

        r = rw(NULL, T_ARGS("read", "--format", "json", "-o", "-1", "orders"));
        struct t_json *j = t_json_parse(r.out, r.out_len);
        cr_assert_not_null(j, "%s", r.out);
        cr_expect_str_eq(t_json_str(j, "payload"), "d");
        cr_expect_str_eq(t_json_str(t_json_get(j, "props"), "k"), "v");
        t_json_free(j);
        t_out_free(&r);

        r = rw(NULL, T_ARGS("read", "-c", "3", "--show-position", "orders"));
        cr_expect_str_eq(r.out, "a\nb\nc\n");
        const char *line = t_line(r.err, "position: ");
        cr_assert_not_null(line, "%s", r.err);
        char pos[64];
        snprintf(pos, sizeof(pos), "%s", line + strlen("position: "));
        t_out_free(&r);
        r = rw(NULL, T_ARGS("read", "--after", pos, "orders"));
        cr_expect_str_eq(r.out, "d\n");
        t_out_free(&r);

        r = rw(NULL, T_ARGS("info", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.out, "channel\torders\n"), "%s", r.out);
        cr_expect(strstr(r.out, "term\t1\n"), "%s", r.out);
        t_out_free(&r);

        r = rw(NULL, T_ARGS("channels"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "orders\n");
        t_out_free(&r);

        r = rw(NULL, T_ARGS("truncate", "orders", pos));
        cr_expect_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        r = rw(NULL, T_ARGS("read", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.out, "d\n"), "what is after the cut stays: %s", r.out);
        t_out_free(&r);

        r = rw(NULL, T_ARGS("read", "nope"));
        cr_expect_eq(r.code, 66, "%s", r.err);
        /* The channel named once by walctl, then the keys Redis lacks. */
        cr_expect_str_eq(r.err,
                         "walctl: nope: no such channel (redis: no key wal:nope nor wal:nope:term)\n");
        t_out_free(&r);
}

/* On Redis, truncating at an ID after the last entry would delete every
 * entry: walctl refuses it (64) and the records stay. */
Test(walctl_redis, truncate_after_last_id_is_refused)
{
        struct t_out r = rw("a\nb\n", T_ARGS("append", "orders"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        r = rw(NULL, T_ARGS("truncate", "orders", "99999999999999-0"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        cr_expect(strstr(r.err, "ID 99999999999999-0 is after the last ID"), "%s", r.err);
        t_out_free(&r);
        r = rw(NULL, T_ARGS("read", "orders"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        cr_expect_str_eq(r.out, "a\nb\n");
        t_out_free(&r);
}

Test(walctl_redis, follow_and_fencing)
{
        struct t_out r = rw("x\n", T_ARGS("--term", "4", "append", "f"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        r = rw("y\n", T_ARGS("--term", "2", "append", "f"));
        cr_expect_eq(r.code, 75, "fenced: %s", r.err);
        t_out_free(&r);

        const char *args[] = { "-b", "redis", "-X", url, "read", "-f", "f", NULL };
        int out, err;
        pid_t pid = t_walctl_spawn(args, NULL, &out, &err);
        char buf[64];
        cr_assert_geq(t_read_line(out, buf, sizeof(buf), 20000), 0);
        cr_expect_str_eq(buf, "x");
        r = rw("z\n", T_ARGS("append", "f"));
        cr_expect_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        cr_assert_geq(t_read_line(out, buf, sizeof(buf), 20000), 0, "live record");
        cr_expect_str_eq(buf, "z");
        kill(pid, SIGINT);
        cr_expect_eq(t_wait(pid), 0);
        close(out);
        close(err);
}

/* A channel whose key holds another type is bad data (65), and the error
 * names the channel once and the key (it used to say "sc: redis: opening
 * channel sc: ..."). */
Test(walctl_redis, wrong_type_key_is_65_naming_the_channel_once)
{
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "redis-cli -p %d SET wal:sc hello >/dev/null", port);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        struct t_out r = rw(NULL, T_ARGS("read", "sc"));
        cr_expect_eq(r.code, 65, "%s", r.err);
        cr_expect_str_eq(r.err, "walctl: sc: redis: key wal:sc holds a string, not a stream\n");
        cr_expect_str_empty(r.out);
        t_out_free(&r);
}

/* A database the server does not have is a bad redis.url (64), named as
 * such, not a local I/O error (74). */
Test(walctl_redis, database_out_of_range_is_64_naming_the_url)
{
        char bad[128];
        snprintf(bad, sizeof(bad), "%.*s/99", (int)(strrchr(url, '/') - url), url);
        struct t_out r = t_walctl(NULL, NULL, 0, T_ARGS("-b", "redis", "-X", bad, "channels"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        cr_expect(strstr(r.err, "redis.url names database 99"), "%s", r.err);
        cr_expect_str_empty(r.out);
        t_out_free(&r);
}

Test(walctl_redis, unreachable_server_is_69)
{
        char dead[128];
        snprintf(dead, sizeof(dead), "redis.url=redis://127.0.0.1:%d/0", t_free_port());
        struct t_out r = t_walctl(NULL, NULL, 0, T_ARGS("-b", "redis", "-X", dead,
                                                        "-X", "redis.connect_timeout=500ms",
                                                        "read", "x"));
        cr_expect_eq(r.code, 69, "%s", r.err);
        cr_expect(strncmp(r.err, "walctl: ", 8) == 0, "%s", r.err);
        cr_expect_str_empty(r.out);
        t_out_free(&r);
}

/*
 * The server goes away while records are in flight: the backend retries
 * them (retry.max_elapsed=0 retries until closed), so they never complete
 * on their own.  SIGTERM or SIGINT must still end walctl append promptly
 * (status 1, naming the records left unacknowledged), with and without
 * --txn; it used to wait for those records forever, ignoring the signal.
 */
static void server_gone_then_signal(bool txn, int sig)
{
        const char *args[] = { "-b", "redis", "-X", url, "append", "-J",
                               txn ? "--txn" : "-H", txn ? "gone" : "k=v", txn ? NULL : "gone",
                               NULL };
        int in, out, err;
        pid_t pid = t_walctl_spawn(args, &in, &out, &err);
        cr_assert_eq(write(in, "a\n", 2), 2);
        char buf[256];
        if (!txn) {
                cr_assert_geq(t_read_line(out, buf, sizeof(buf), 20000), 0, "a acked");
        } else {
                usleep(500 * 1000); /* the transaction began and its first body is in */
        }
        t_redis_stop(server, server_dir);
        server = -1;
        server_dir = NULL;
        cr_assert_eq(write(in, "b\n", 2), 2);
        usleep(300 * 1000); /* b is in flight, retried against a closed port */
        cr_assert_eq(kill(pid, sig), 0);
        int code = t_wait_ms(pid, 15000);
        char *e = t_slurp(err);
        cr_expect_eq(code, 1, "ends promptly with status 1 (-1: still running after 15 s); "
                     "stderr: %s", e);
        /* One warning for the outage, not one per backoff step (20, 40, 80,
         * 160 ms...: four or five in these 0.3 s before). */
        size_t warnings = 0;
        for (const char *p = e; (p = strstr(p, "cannot reconnect")); p++)
                warnings++;
        cr_expect_leq(warnings, 1, "%zu reconnect warnings: %s", warnings, e);
        if (txn)
                cr_expect(strstr(e, "none of its 2 records is visible to readers"), "%s", e);
        else
                cr_expect(strstr(e, "interrupted after 1 records (every one acknowledged is "
                                    "durable); 1 in flight not acknowledged"), "%s", e);
        free(e);
        close(in);
        close(out);
        close(err);
}

Test(walctl_redis, sigterm_ends_append_while_the_server_is_gone)
{
        server_gone_then_signal(false, SIGTERM);
}

Test(walctl_redis, sigint_ends_txn_append_while_the_server_is_gone)
{
        server_gone_then_signal(true, SIGINT);
}

/*
 * walctl bench against a server that stops answering (SIGSTOP: the
 * connection stays open, no reply comes): its writers' appends never
 * complete.  The run must still end, at its --seconds or on SIGINT, with
 * the backend named as unavailable (69); it used to wait for those appends
 * forever.
 */
static void bench_against_a_hung_server(const char *seconds, bool interrupt)
{
        const char *args[] = { "-b", "redis", "-X", url, "bench", "--writers", "2",
                               "--readers", "1", "--seconds", seconds, NULL };
        int out, err;
        pid_t pid = t_walctl_spawn(args, NULL, &out, &err);
        usleep(500 * 1000);
        cr_assert_eq(kill(server, SIGSTOP), 0);
        if (interrupt) {
                usleep(300 * 1000);
                cr_assert_eq(kill(pid, SIGINT), 0);
        }
        int code = t_wait_ms(pid, 20000);
        cr_assert_eq(kill(server, SIGCONT), 0);
        char *e = t_slurp(err);
        cr_expect_eq(code, 69, "ends with 69 (-1: still running 20 s on); stderr: %s", e);
        cr_expect(strstr(e, "did not complete"), "%s", e);
        free(e);
        close(out);
        close(err);
}

Test(walctl_redis, bench_ends_at_its_seconds_when_the_server_hangs)
{
        bench_against_a_hung_server("1", false);
}

Test(walctl_redis, bench_ends_on_sigint_when_the_server_hangs)
{
        bench_against_a_hung_server("60", true);
}

/* Reading from a position that was trimmed away names that position as the
 * user gave it: "-o 1-0" used to be reported as "the position after
 * 0-18446744073709551615". */
Test(walctl_redis, trimmed_start_is_named_as_given)
{
        struct t_out r = rw("a\nb\nc\n", T_ARGS("append", "-J", "tr"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        char id[64];
        const char *nl = strchr(r.out, '\n');
        struct t_json *ack = t_json_parse(r.out, (size_t)(nl - r.out));
        cr_assert_not_null(ack, "%s", r.out);
        snprintf(id, sizeof(id), "%s", t_json_str(ack, "id"));
        t_json_free(ack);
        t_out_free(&r);
        r = rw(NULL, T_ARGS("truncate", "tr", id));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);
        r = rw(NULL, T_ARGS("read", "-o", "1-0", "tr"));
        cr_expect_eq(r.code, 64, "%s", r.err);
        cr_expect(strstr(r.err, "reading from 1-0"), "%s", r.err);
        cr_expect_null(strstr(r.err, "18446744073709551615"), "%s", r.err);
        t_out_free(&r);
}

/*
 * Without -f, read stops at the last ID the channel had when it began.  It
 * used to stop also after 2 s without news (meant for a log that ends in
 * messages readers never see, such as a transaction never committed), so a
 * server that stalled for longer ended the read early, printing part of the
 * log with status 0.  Here the server is stopped (SIGSTOP) for 3 s after
 * the first record printed: the read must wait it out and print all 40.
 */
Test(walctl_redis, read_waits_out_a_stalled_server_instead_of_ending_early)
{
        char in[400] = "";
        for (int i = 0; i < 40; i++)
                snprintf(in + strlen(in), sizeof(in) - strlen(in), "r%d\n", i);
        struct t_out r = rw(in, T_ARGS("append", "stall"));
        cr_assert_eq(r.code, 0, "%s", r.err);
        t_out_free(&r);

        const char *args[] = { "-b", "redis", "-X", url, "-X", "redis.read_count=1", "read",
                               "stall", NULL };
        int out, err;
        pid_t pid = t_walctl_spawn(args, NULL, &out, &err);
        char buf[64];
        cr_assert_geq(t_read_line(out, buf, sizeof(buf), 10000), 0, "first record");
        cr_assert_eq(kill(server, SIGSTOP), 0);
        usleep(3000 * 1000);
        cr_assert_eq(kill(server, SIGCONT), 0);
        int code = t_wait_ms(pid, 30000);
        char *rest = t_slurp(out);
        char *e = t_slurp(err);
        cr_expect_eq(code, 0, "stderr: %s", e);
        cr_expect_eq(1 + t_count_lines(rest), 40, "printed %zu of 40 records; stderr: %s",
                     1 + t_count_lines(rest), e);
        free(rest);
        free(e);
        close(out);
        close(err);
}
