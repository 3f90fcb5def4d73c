/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/test-scan.c: scanners: every deliver policy and filter,
 * blocking next and the pollable fd, delivery without waiting for a
 * periodic tick, and catch-up/tailing switching with a tiny write-ahead
 * cache (exactly once, in order, across 100k messages).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wal/wal-registry.h>
#include "t-adaptor.h"
#include "t-flaky.h"
#include "t-helpers.h"
#include "utility/walu.h"
#include "wal-build-config.h"

static const struct wal_filter data_only = { .types = WAL_FILTER_TYPE(WAL_MSG_DATA) };

static wal_scanner *open_scanner(wal *w, struct wal_deliver d, const struct wal_filter *f)
{
        wal_scanner *s = NULL;
        wal_error *err = NULL;
        int r = wal_read(w, &d, f, &s, &err);
        cr_assert_eq(r, 0, "wal_read: %s", wal_error_message(err));
        return s;
}

/* Read until @n messages or a 2 s silence; texts joined by ',' into @buf. */
static int read_texts(wal_scanner *s, int n, char *buf, size_t len)
{
        int got = 0;
        buf[0] = '\0';
        while (got < n) {
                wal_msg *m = NULL;
                int r = wal_scanner_next(s, 2000, &m, NULL);
                if (r == -ETIMEDOUT)
                        break;
                cr_assert_eq(r, 0, "next: %d", r);
                size_t l = strlen(buf);
                snprintf(buf + l, len - l, "%s%s", l ? "," : "", ta_text(m));
                wal_msg_unref(m);
                got++;
        }
        return got;
}

static void expect_quiet(wal_scanner *s)
{
        wal_msg *m = NULL;
        int r = wal_scanner_next(s, 100, &m, NULL);
        cr_assert_eq(r, -ETIMEDOUT, "unexpected message \"%s\"", r == 0 ? ta_text(m) : "");
}

static wal_opener *o;
static wal *w;
static wal_msg *ids[10];

/* Ten messages "0".."9" on vchannels a/b alternating, "3" and "7" on none. */
static void setup(void)
{
        cr_assert_eq(ta_opener(NULL, &o), 0);
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RW, &w, NULL), 0);
        for (int i = 0; i < 10; i++) {
                char t[8];
                snprintf(t, sizeof(t), "%d", i);
                const char *vc = (i == 3 || i == 7) ? NULL : (i % 2 ? "b" : "a");
                cr_assert_eq(ta_append(w, t, vc, &ids[i]), 0);
        }
}

static void teardown(void)
{
        for (int i = 0; i < 10; i++)
                wal_msg_unref(ids[i]);
        wal_close(w);
        ta_opener_close(o);
}

TestSuite(adaptor_scan, .init = setup, .fini = teardown, .timeout = 120);

Test(adaptor_scan, deliver_all)
{
        char buf[256];
        wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                      &data_only);
        cr_assert_eq(read_texts(s, 10, buf, sizeof(buf)), 10);
        cr_assert_str_eq(buf, "0,1,2,3,4,5,6,7,8,9");
        expect_quiet(s);
        wal_scanner_close(s);
}

Test(adaptor_scan, deliver_latest_on_rw_and_ro)
{
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        struct wal_deliver d = { .policy = WAL_DELIVER_LATEST };
        wal_scanner *s = open_scanner(w, d, &data_only);
        wal_scanner *sr = open_scanner(ro, d, &data_only);
        expect_quiet(s);
        cr_assert_eq(ta_append(w, "new1", NULL, NULL), 0);
        cr_assert_eq(ta_append(w, "new2", NULL, NULL), 0);
        char buf[256];
        cr_assert_eq(read_texts(s, 2, buf, sizeof(buf)), 2);
        cr_assert_str_eq(buf, "new1,new2");
        cr_assert_eq(read_texts(sr, 2, buf, sizeof(buf)), 2);
        cr_assert_str_eq(buf, "new1,new2");
        expect_quiet(s);
        wal_scanner_close(s);
        wal_scanner_close(sr);
        wal_close(ro);
}

/* The memory backend with its default inline completions: an append is
 * durable when wal_append() returns. */
static bool completes_inline(void)
{
        const char *c = getenv("WAL_TEST_MEMORY_COMPLETION");
        return strcmp(ta_backend(), "memory") == 0 && !(c && *c);
}

/* With no scanner open, an asynchronous append's completion is drained by
 * the wal's dispatcher, not by the appender (adaptor/wal.c): a scanner
 * opened at "latest" right after such appends returned still starts after
 * all of them, and delivers the next one.  Repeated, so the dispatcher is
 * caught half-way at times. */
Test(adaptor_scan, latest_after_async_appends_starts_after_them)
{
        for (int round = 0; round < 20; round++) {
                struct ta_counter c = { 0 };
                for (int i = 0; i < 200; i++) {
                        wal_msg *m = ta_msg("before", NULL);
                        cr_assert_eq(wal_append_take(w, m, ta_count_done, &c, NULL), 0);
                }
                /* Elsewhere appends complete after they return, and
                 * "latest" starts after the completed ones. */
                if (!completes_inline())
                        cr_assert_eq(ta_wait_calls(&c, 200, 10000), 0);
                wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_LATEST },
                                              &data_only);
                cr_assert_eq(ta_append(w, "after", NULL, NULL), 0);
                wal_msg *got = NULL;
                cr_assert_eq(wal_scanner_next(s, 2000, &got, NULL), 0);
                cr_assert_str_eq(ta_text(got), "after", "round %d: delivered an append that "
                                 "returned before the scanner was opened", round);
                wal_msg_unref(got);
                expect_quiet(s);
                wal_scanner_close(s);
                cr_assert_eq(ta_wait_calls(&c, 200, 10000), 0);
                cr_assert_eq(atomic_load(&c.ok), 200);
        }
}

Test(adaptor_scan, start_from_and_after_an_id)
{
        char buf[256];
        struct wal_deliver d = { .policy = WAL_DELIVER_START_FROM, .id = wal_msg_id(ids[5]) };
        wal_scanner *s = open_scanner(w, d, &data_only);
        cr_assert_eq(read_texts(s, 5, buf, sizeof(buf)), 5);
        cr_assert_str_eq(buf, "5,6,7,8,9");
        expect_quiet(s);
        wal_scanner_close(s);

        d.policy = WAL_DELIVER_START_AFTER;
        s = open_scanner(w, d, &data_only);
        cr_assert_eq(read_texts(s, 4, buf, sizeof(buf)), 4);
        cr_assert_str_eq(buf, "6,7,8,9");
        wal_scanner_close(s);

        /* The same on a read-only wal (backend only, no cache). */
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        d.policy = WAL_DELIVER_START_FROM;
        s = open_scanner(ro, d, &data_only);
        cr_assert_eq(read_texts(s, 5, buf, sizeof(buf)), 5);
        cr_assert_str_eq(buf, "5,6,7,8,9");
        wal_scanner_close(s);
        d.policy = WAL_DELIVER_START_AFTER;
        s = open_scanner(ro, d, &data_only);
        cr_assert_eq(read_texts(s, 4, buf, sizeof(buf)), 4);
        cr_assert_str_eq(buf, "6,7,8,9");
        wal_scanner_close(s);
        wal_close(ro);
}

Test(adaptor_scan, from_time_tick)
{
        char buf[256];
        struct wal_deliver d = { .policy = WAL_DELIVER_FROM_TIME_TICK,
                                 .time_tick = wal_msg_time_tick(ids[7]) };
        wal_scanner *s = open_scanner(w, d, &data_only);
        cr_assert_eq(read_texts(s, 3, buf, sizeof(buf)), 3);
        cr_assert_str_eq(buf, "7,8,9");
        expect_quiet(s);
        wal_scanner_close(s);
        /* read-only: from the backend */
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        s = open_scanner(ro, d, &data_only);
        cr_assert_eq(read_texts(s, 3, buf, sizeof(buf)), 3);
        cr_assert_str_eq(buf, "7,8,9");
        wal_scanner_close(s);
        /* a tick in the future: only what comes later */
        wal_msg *later = NULL;
        d.time_tick = (walu_realtime_ms() + 300) << 18;
        s = open_scanner(w, d, &data_only);
        cr_assert_eq(ta_append(w, "too-early", NULL, NULL), 0);
        struct timespec ts = { 0, 400 * 1000000L };
        nanosleep(&ts, NULL);
        cr_assert_eq(ta_append(w, "in-time", NULL, &later), 0);
        cr_assert_geq(wal_msg_time_tick(later), d.time_tick);
        cr_assert_eq(read_texts(s, 1, buf, sizeof(buf)), 1);
        cr_assert_str_eq(buf, "in-time");
        expect_quiet(s);
        wal_scanner_close(s);
        wal_msg_unref(later);
        wal_close(ro);
}

Test(adaptor_scan, filter_vchannel)
{
        char buf[256];
        struct wal_filter f = data_only;
        f.vchannel = "a";
        wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, &f);
        /* a's messages, plus those of no vchannel (visible to every vchannel). */
        cr_assert_eq(read_texts(s, 7, buf, sizeof(buf)), 7);
        cr_assert_str_eq(buf, "0,2,3,4,6,7,8");
        expect_quiet(s);
        wal_scanner_close(s);
}

Test(adaptor_scan, filter_types)
{
        struct wal_filter f = { .types = WAL_FILTER_TYPE(WAL_MSG_TIME_TICK) };
        wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, &f);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 2000, &m, NULL), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_TIME_TICK); /* the anchor */
        cr_assert_lt(wal_msg_time_tick(m), wal_msg_time_tick(ids[0]));
        wal_msg_unref(m);
        wal_scanner_close(s);

        /* No type filter: ticks and data interleave in tick order. */
        s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, NULL);
        uint64_t last = 0;
        int data = 0;
        while (data < 10) {
                cr_assert_eq(wal_scanner_next(s, 2000, &m, NULL), 0);
                cr_assert_gt(wal_msg_time_tick(m), last);
                last = wal_msg_time_tick(m);
                data += wal_msg_type(m) == WAL_MSG_DATA;
                wal_msg_unref(m);
        }
        wal_scanner_close(s);
}

Test(adaptor_scan, filter_time_tick_gt_ge_and_combined)
{
        char buf[256];
        struct wal_filter f = data_only;
        f.tt_gt_set = true;
        f.tt_gt = wal_msg_time_tick(ids[6]);
        wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, &f);
        cr_assert_eq(read_texts(s, 3, buf, sizeof(buf)), 3);
        cr_assert_str_eq(buf, "7,8,9");
        wal_scanner_close(s);

        f = data_only;
        f.tt_ge_set = true;
        f.tt_ge = wal_msg_time_tick(ids[6]);
        s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL }, &f);
        cr_assert_eq(read_texts(s, 4, buf, sizeof(buf)), 4);
        cr_assert_str_eq(buf, "6,7,8,9");
        wal_scanner_close(s);

        /* vchannel AND tick >= AND type, from an ID. */
        f.vchannel = "b";
        struct wal_deliver d = { .policy = WAL_DELIVER_START_AFTER, .id = wal_msg_id(ids[1]) };
        s = open_scanner(w, d, &f);
        cr_assert_eq(read_texts(s, 2, buf, sizeof(buf)), 2);
        cr_assert_str_eq(buf, "7,9");
        expect_quiet(s);
        wal_scanner_close(s);
}

struct delayed {
        wal *w;
        int delay_ms;
        const char *text;
};

static void *append_later(void *arg)
{
        struct delayed *d = arg;
        struct timespec ts = { d->delay_ms / 1000, (d->delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        ta_append(d->w, d->text, NULL, NULL);
        return NULL;
}

static void poll_case(wal *ww, wal *reader)
{
        wal_scanner *s = open_scanner(reader, (struct wal_deliver){ .policy = WAL_DELIVER_LATEST },
                                      &data_only);
        int fd = wal_scanner_fd(s);
        cr_assert_geq(fd, 0);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 0, &m, NULL), -ETIMEDOUT);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        /* Spurious readiness is allowed (a filtered-out tick), but after next()
         * found nothing the fd must go quiet, not stay readable. */
        int quiet = 0;
        for (int i = 0; i < 10 && !quiet; i++) {
                if (poll(&p, 1, 50) == 0)
                        quiet = 1;
                else
                        cr_assert_eq(wal_scanner_next(s, 0, &m, NULL), -ETIMEDOUT);
        }
        cr_assert(quiet, "fd stays readable with nothing to read");
        struct delayed d = { ww, 100, "polled" };
        pthread_t th;
        pthread_create(&th, NULL, append_later, &d);
        uint64_t t0 = walu_monotonic_ns();
        int got = 0;
        while (!got && walu_monotonic_ns() - t0 < 5000000000ull) {
                cr_assert_geq(poll(&p, 1, 5000), 0);
                int r = wal_scanner_next(s, 0, &m, NULL);
                if (r == 0) {
                        cr_assert_str_eq(ta_text(m), "polled");
                        wal_msg_unref(m);
                        got = 1;
                } else {
                        cr_assert_eq(r, -ETIMEDOUT);
                }
        }
        cr_assert(got, "poll never reported the message");
        pthread_join(th, NULL);
        wal_scanner_close(s);
}

Test(adaptor_scan, pollable_fd_tailing_and_catchup)
{
        poll_case(w, w);
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        poll_case(w, ro);
        wal_close(ro);
}

Test(adaptor_scan, blocking_next_wakes_on_append_and_times_out)
{
        wal_scanner *s = open_scanner(w, (struct wal_deliver){ .policy = WAL_DELIVER_LATEST },
                                      &data_only);
        wal_msg *m = NULL;
        uint64_t t0 = walu_monotonic_ns();
        cr_assert_eq(wal_scanner_next(s, 200, &m, NULL), -ETIMEDOUT);
        uint64_t el = (walu_monotonic_ns() - t0) / 1000000u;
        cr_assert(el >= 150 && el < 2000, "waited %llu ms", (unsigned long long)el);
        struct delayed d = { w, 100, "woke" };
        pthread_t th;
        pthread_create(&th, NULL, append_later, &d);
        cr_assert_eq(wal_scanner_next(s, -1, &m, NULL), 0);
        cr_assert_str_eq(ta_text(m), "woke");
        wal_msg_unref(m);
        pthread_join(th, NULL);
        wal_scanner_close(s);
}

Test(adaptor_scan, delivery_does_not_wait_for_a_periodic_tick, .init = NULL, .fini = NULL)
{
        const char *props[] = { "timetick.interval=60s", NULL };
        wal_opener *ox = NULL;
        wal *wx = NULL;
        cr_assert_eq(ta_opener(props, &ox), 0);
        cr_assert_eq(wal_open(ox, "quick", 1, WAL_ACCESS_RW, &wx, NULL), 0);
        wal_scanner *s = open_scanner(wx, (struct wal_deliver){ .policy = WAL_DELIVER_LATEST },
                                      NULL);
        uint64_t t0 = walu_monotonic_ns();
        wal_msg *in = ta_msg("fast", NULL);
        struct ta_counter c = { 0 };
        cr_assert_eq(wal_append(wx, in, ta_count_done, &c, NULL), 0);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 5000, &m, NULL), 0);
        cr_assert_eq(wal_msg_type(m), WAL_MSG_DATA);
        cr_assert_str_eq(ta_text(m), "fast");
        cr_assert_lt(walu_monotonic_ns() - t0, 2000000000ull);
        wal_msg_unref(m);
        wal_msg_unref(in);
        wal_scanner_close(s);
        wal_close(wx);
        ta_opener_close(ox);
        cr_assert_eq(atomic_load(&c.ok), 1);
}

Test(adaptor_scan, catchup_then_tailing_across_terms, .init = NULL, .fini = NULL)
{
        wal_opener *ox = NULL;
        wal *wx = NULL;
        cr_assert_eq(ta_opener(NULL, &ox), 0);
        cr_assert_eq(wal_open(ox, "terms", 1, WAL_ACCESS_RW, &wx, NULL), 0);
        for (int i = 0; i < 300; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                cr_assert_eq(ta_append(wx, t, NULL, NULL), 0);
        }
        wal_close(wx);
        /* Term 2: its cache starts at its anchor, after term 1's messages. */
        cr_assert_eq(wal_open(ox, "terms", 2, WAL_ACCESS_RW, &wx, NULL), 0);
        wal_scanner *s = open_scanner(wx, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                      &data_only);
        uint64_t last_tick = 0;
        for (int i = 300; i < 600; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                cr_assert_eq(ta_append(wx, t, NULL, NULL), 0);
        }
        for (int i = 0; i < 600; i++) {
                wal_msg *m = NULL;
                cr_assert_eq(wal_scanner_next(s, 2000, &m, NULL), 0, "at %d", i);
                cr_assert_eq(atoi(ta_text(m)), i);
                cr_assert_gt(wal_msg_time_tick(m), last_tick, "tick order broken at %d", i);
                last_tick = wal_msg_time_tick(m);
                cr_assert_eq(wal_msg_term(m), i < 300 ? 1 : 2);
                wal_msg_unref(m);
        }
        expect_quiet(s);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(wx, &json), 0);
        cr_assert(strstr(json, "\"to_tailing\":1"), "%s", json);
        cr_assert(!strstr(json, "\"from_cache\":0,"), "%s", json);
        free(json);
        wal_scanner_close(s);
        wal_close(wx);
        ta_opener_close(ox);
}

/* ---- Falling out of the cache ---- */

/* A tailing reader that stops reading while appends evict its next message
 * from a tiny cache switches back to catch-up and reads every message once,
 * in order, then tails again. */
Test(adaptor_scan, tailing_reader_left_behind_falls_back_to_catchup, .init = NULL,
     .fini = NULL)
{
        const char *props[] = { "cache.max_bytes=200", NULL };
        wal_opener *ox = NULL;
        wal *wx = NULL;
        cr_assert_eq(ta_opener(props, &ox), 0);
        cr_assert_eq(wal_open(ox, "behind", 1, WAL_ACCESS_RW, &wx, NULL), 0);
        wal_scanner *s = open_scanner(wx, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                      &data_only);
        cr_assert_eq(ta_append(wx, "0", NULL, NULL), 0);
        wal_msg *m = NULL;
        cr_assert_eq(wal_scanner_next(s, 5000, &m, NULL), 0);
        cr_assert_str_eq(ta_text(m), "0");
        wal_msg_unref(m);
        /* Caught up: the next call finds nothing and leaves the reader
         * tailing the cache. */
        m = NULL;
        int r = wal_scanner_next(s, 50, &m, NULL);
        cr_assert(r == -EAGAIN || r == -ETIMEDOUT, "next on a caught-up scanner: %d", r);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(wx, &json), 0);
        cr_assert(!strstr(json, "\"to_tailing\":0"), "the reader never tailed: %s", json);
        cr_assert(strstr(json, "\"to_catchup\":0"), "%s", json);
        free(json);
        for (int i = 1; i <= 50; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                cr_assert_eq(ta_append(wx, t, NULL, NULL), 0);
        }
        for (int i = 1; i <= 50; i++) {
                m = NULL;
                cr_assert_eq(wal_scanner_next(s, 5000, &m, NULL), 0, "at %d", i);
                cr_assert_eq(atoi(ta_text(m)), i, "gap or duplicate at %d", i);
                wal_msg_unref(m);
        }
        expect_quiet(s);
        cr_assert_eq(wal_stats_json(wx, &json), 0);
        cr_assert(!strstr(json, "\"to_catchup\":0"), "never fell back: %s", json);
        cr_assert(!strstr(json, "\"evictions\":0"), "%s", json);
        free(json);
        wal_scanner_close(s);
        wal_close(wx);
        ta_opener_close(ox);
}

/* ---- Tiny cache: eviction all the time ---- */

#define BIG_N 100000

struct writer_arg {
        wal *w;
        struct ta_counter c;
        int in_order_errors;
        atomic_int last_acked;
};

static void ordered_done(void *arg, int status, const wal_msg *msg, const wal_error *err)
{
        struct writer_arg *wa = arg;
        if (status == 0) {
                int v = atoi(ta_text(msg));
                /* Callbacks run in ID order: each ack is the next index. */
                if (v != atomic_load(&wa->last_acked) + 1)
                        wa->in_order_errors++;
                atomic_store(&wa->last_acked, v);
        }
        ta_count_done(&wa->c, status, msg, err);
}

static void *writer(void *arg)
{
        struct writer_arg *wa = arg;
        for (int i = 0; i < BIG_N; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                wal_msg *m = ta_msg(t, NULL);
                while (wal_append(wa->w, m, ordered_done, wa, NULL) == -EAGAIN)
                        ;
                wal_msg_unref(m);
                /* keep at most ~4k in flight */
                while (i - atomic_load(&wa->c.calls) > 4096) {
                        struct timespec ts = { 0, 100000 };
                        nanosleep(&ts, NULL);
                }
        }
        return NULL;
}

struct reader_arg {
        wal_scanner *s;
        int expected;
        int errors;
        int start_delay_ms;
};

static void *reader(void *arg)
{
        struct reader_arg *ra = arg;
        while (ra->expected < BIG_N) {
                wal_msg *m = NULL;
                int r = wal_scanner_next(ra->s, 10000, &m, NULL);
                if (r != 0) {
                        ra->errors++;
                        break;
                }
                if (atoi(ta_text(m)) != ra->expected)
                        ra->errors++;
                ra->expected = atoi(ta_text(m)) + 1;
                wal_msg_unref(m);
                if (ra->start_delay_ms && ra->expected % 10000 == 0) {
                        /* fall behind now and then */
                        struct timespec ts = { 0, ra->start_delay_ms * 1000000L };
                        nanosleep(&ts, NULL);
                }
        }
        return NULL;
}

Test(adaptor_scan, tiny_cache_exactly_once_in_order, .init = NULL, .fini = NULL, .timeout = 300)
{
        const char *props[] = { "cache.max_bytes=200", "cache.max_age=5ms", NULL };
        wal_opener *ox = NULL;
        struct writer_arg wa = { .last_acked = -1 };
        cr_assert_eq(ta_opener(props, &ox), 0);
        cr_assert_eq(wal_open(ox, "tiny", 1, WAL_ACCESS_RW, &wa.w, NULL), 0);
        struct reader_arg ra[2] = { { .start_delay_ms = 0 }, { .start_delay_ms = 20 } };
        for (int i = 0; i < 2; i++)
                ra[i].s = open_scanner(wa.w, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                       &data_only);
        pthread_t tw, tr[2];
        pthread_create(&tw, NULL, writer, &wa);
        for (int i = 0; i < 2; i++)
                pthread_create(&tr[i], NULL, reader, &ra[i]);
        pthread_join(tw, NULL);
        for (int i = 0; i < 2; i++)
                pthread_join(tr[i], NULL);
        cr_assert_eq(ta_wait_calls(&wa.c, BIG_N, 10000), 0);
        cr_assert_eq(atomic_load(&wa.c.ok), BIG_N);
        cr_assert_eq(wa.in_order_errors, 0, "callbacks out of ID order");
        for (int i = 0; i < 2; i++) {
                cr_assert_eq(ra[i].errors, 0, "reader %d: gap, duplicate or error", i);
                cr_assert_eq(ra[i].expected, BIG_N);
                expect_quiet(ra[i].s);
        }
        char *json = NULL;
        cr_assert_eq(wal_stats_json(wa.w, &json), 0);
        /* The cache really evicted, and readers met it.  Whether a reader
         * also fell out of the cache and back depends on scheduling here (a
         * reader that never catches up never tails); that switch has its
         * own test, tailing_reader_left_behind_falls_back_to_catchup. */
        cr_assert(!strstr(json, "\"to_tailing\":0"), "%s", json);
        cr_assert(!strstr(json, "\"evictions\":0"), "%s", json);
        cr_log_info("%s", json);
        free(json);
        for (int i = 0; i < 2; i++)
                wal_scanner_close(ra[i].s);
        wal_close(wa.w);
        ta_opener_close(ox);
}

/* ---- Catch-up meeting a live edge ---- */

struct live_writer {
        wal *w;
        int from, to;
        struct ta_counter c;
};

static void *live_writer_main(void *arg)
{
        struct live_writer *lw = arg;
        for (int i = lw->from; i < lw->to; i++) {
                char t[16];
                snprintf(t, sizeof(t), "%d", i);
                wal_msg *m = ta_msg(t, NULL);
                wal_append(lw->w, m, ta_count_done, &lw->c, NULL);
                wal_msg_unref(m);
                while (i - lw->from - atomic_load(&lw->c.calls) > 512)
                        sched_yield();
        }
        return NULL;
}

/* A scanner catching up from the backend reaches messages the backend
 * already shows but the cache has not received yet: switching to the cache
 * there must neither repeat nor skip any of them. */
Test(adaptor_scan, catchup_meets_live_appends_exactly_once, .init = NULL, .fini = NULL,
     .timeout = 240)
{
        for (int round = 0; round < 3; round++) {
                wal_opener *ox = NULL;
                wal *wx = NULL;
                cr_assert_eq(ta_opener(NULL, &ox), 0);
                cr_assert_eq(wal_open(ox, "live", 1, WAL_ACCESS_RW, &wx, NULL), 0);
                for (int i = 0; i < 2000; i++) {
                        char t[16];
                        snprintf(t, sizeof(t), "%d", i);
                        cr_assert_eq(ta_append(wx, t, NULL, NULL), 0);
                }
                wal_close(wx);
                cr_assert_eq(wal_open(ox, "live", 2, WAL_ACCESS_RW, &wx, NULL), 0);
                struct live_writer lw = { .w = wx, .from = 2000, .to = 22000 };
                wal_scanner *s = open_scanner(wx, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                              &data_only);
                pthread_t th;
                pthread_create(&th, NULL, live_writer_main, &lw);
                for (int i = 0; i < lw.to; i++) {
                        wal_msg *m = NULL;
                        cr_assert_eq(wal_scanner_next(s, 10000, &m, NULL), 0, "at %d", i);
                        cr_assert_eq(atoi(ta_text(m)), i, "round %d: got %s, want %d", round,
                                     ta_text(m), i);
                        wal_msg_unref(m);
                }
                pthread_join(th, NULL);
                expect_quiet(s);
                wal_scanner_close(s);
                wal_close(wx);
                ta_opener_close(ox);
        }
}

/* The same with a tiny cache and completions that reach the adaptor well
 * after the backend shows the message: a catch-up scanner at the live edge
 * is often ahead of the cache and must not switch to it there. */
Test(adaptor_scan, catchup_ahead_of_cache_exactly_once, .init = NULL, .fini = NULL,
     .timeout = 240)
{
        const char *props[] = { "cache.max_bytes=300", NULL };
        atomic_store(&flaky_mode, FLAKY_DELAY);
        wal_opener *ox = flaky_opener(props);
        wal *wx = NULL;
        cr_assert_eq(wal_open(ox, "ahead", 1, WAL_ACCESS_RW, &wx, NULL), 0);
        struct live_writer lw = { .w = wx, .from = 0, .to = 3000 };
        wal_scanner *s[2];
        for (int k = 0; k < 2; k++)
                s[k] = open_scanner(wx, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                    &data_only);
        pthread_t th;
        pthread_create(&th, NULL, live_writer_main, &lw);
        for (int i = 0; i < lw.to; i++) {
                for (int k = 0; k < 2; k++) {
                        wal_msg *m = NULL;
                        cr_assert_eq(wal_scanner_next(s[k], 10000, &m, NULL), 0, "at %d", i);
                        cr_assert_eq(atoi(ta_text(m)), i, "scanner %d: got %s, want %d", k,
                                     ta_text(m), i);
                        wal_msg_unref(m);
                }
        }
        pthread_join(th, NULL);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(wx, &json), 0);
        cr_log_info("%s", json);
        free(json);
        for (int k = 0; k < 2; k++) {
                expect_quiet(s[k]);
                wal_scanner_close(s[k]);
        }
        wal_close(wx);
        atomic_store(&flaky_mode, FLAKY_PASS);
        wal_opener_close(ox);
}

/* Start positions beyond the newest message (a future ID) are honoured on a
 * read-write wal too, where the cache could otherwise serve them early. */
Test(adaptor_scan, start_at_a_future_id)
{
        struct wal_msgid last = wal_msg_id(ids[9]);
        struct wal_msgid future = WAL_MSGID(last.hi, last.lo + 5);
        struct wal_deliver from = { .policy = WAL_DELIVER_START_FROM, .id = future };
        struct wal_deliver after = { .policy = WAL_DELIVER_START_AFTER, .id = future };
        wal_scanner *sf = open_scanner(w, from, NULL);
        wal_scanner *sa = open_scanner(w, after, NULL);
        wal_msg *got[12];
        for (int i = 0; i < 12; i++)
                cr_assert_eq(ta_append(w, "later", NULL, &got[i]), 0);
        wal_scanner *ss[2] = { sf, sa };
        for (int k = 0; k < 2; k++) {
                int n = 0;
                for (;;) {
                        wal_msg *m = NULL;
                        int r = wal_scanner_next(ss[k], 300, &m, NULL);
                        if (r == -ETIMEDOUT)
                                break;
                        cr_assert_eq(r, 0);
                        int cmp = wal_msgid_cmp(wal_msg_id(m), future);
                        cr_assert(k == 0 ? cmp >= 0 : cmp > 0,
                                  "scanner %d delivered an ID before its start", k);
                        n += wal_msg_type(m) == WAL_MSG_DATA;
                        wal_msg_unref(m);
                }
                /* every data message at or after the start, none missing */
                int want = 0;
                for (int i = 0; i < 12; i++) {
                        int cmp = wal_msgid_cmp(wal_msg_id(got[i]), future);
                        want += k == 0 ? cmp >= 0 : cmp > 0;
                }
                cr_assert_eq(n, want, "scanner %d: %d data messages, want %d", k, n, want);
                cr_assert_gt(want, 0);
                wal_scanner_close(ss[k]);
        }
        for (int i = 0; i < 12; i++)
                wal_msg_unref(got[i]);
}

/*
 * Backends that delete whole segments or trim later (local, redis) may still
 * hold what truncate allowed to delete: a start position below the cut then
 * either reads from exactly there or fails with -ERANGE, never a later ID.
 */
static void truncated_position_never_skips(void)
{
        cr_assert_eq(wal_truncate(w, wal_msg_id(ids[5]), NULL), 0);
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        wal *which[2] = { w, ro };
        for (int k = 0; k < 2; k++) {
                struct wal_deliver d = { .policy = WAL_DELIVER_START_FROM,
                                         .id = wal_msg_id(ids[2]) };
                wal_scanner *s = NULL;
                int r = wal_read(which[k], &d, NULL, &s, NULL);
                if (r == 0) {
                        wal_msg *m = NULL;
                        r = wal_scanner_next(s, 1000, &m, NULL);
                        if (r == 0) {
                                cr_assert(wal_msgid_eq(wal_msg_id(m), wal_msg_id(ids[2])),
                                          "%s: start-from below the cut skipped ahead",
                                          k ? "ro" : "rw");
                                wal_msg_unref(m);
                        }
                        wal_scanner_close(s);
                }
                cr_assert(r == 0 || r == -ERANGE, "%s: %d", k ? "ro" : "rw", r);
        }
        wal_close(ro);
}

/* A start position that was truncated away is an error, never a skip. */
Test(adaptor_scan, truncated_position_is_an_error)
{
        if (strcmp(ta_backend(), "memory") != 0) {
                truncated_position_never_skips();
                return;
        }
        cr_assert_eq(wal_truncate(w, wal_msg_id(ids[5]), NULL), 0);
        wal *ro = NULL;
        cr_assert_eq(wal_open(o, "scan", 1, WAL_ACCESS_RO, &ro, NULL), 0);
        wal *which[2] = { w, ro };
        for (int k = 0; k < 2; k++) {
                struct wal_deliver d = { .policy = WAL_DELIVER_START_FROM,
                                         .id = wal_msg_id(ids[2]) };
                wal_scanner *s = NULL;
                wal_error *err = NULL;
                int r = wal_read(which[k], &d, NULL, &s, &err);
                if (r == 0) {
                        wal_msg *m = NULL;
                        r = wal_scanner_next(s, 1000, &m, &err);
                        if (k == 0 && r == 0) {
                                /* The cache still holds it: serving what truncate
                                 * allowed to delete is fine; skipping is not. */
                                cr_assert(wal_msgid_eq(wal_msg_id(m), wal_msg_id(ids[2])));
                                wal_msg_unref(m);
                                wal_scanner_close(s);
                                continue;
                        }
                        cr_assert_eq(r, -ERANGE, "%s: next gave %d", k ? "ro" : "rw", r);
                        wal_error_free(err);
                        err = NULL;
                        /* sticky */
                        cr_assert_eq(wal_scanner_next(s, 0, &m, NULL), -ERANGE);
                        wal_scanner_close(s);
                } else {
                        cr_assert_eq(r, -ERANGE);
                }
                wal_error_free(err);
        }
        wal_close(ro);

        /* With a cache too small to hold it, the read-write wal goes to the
         * backend and reports the truncation. */
        const char *props[] = { "cache.max_bytes=0", NULL };
        wal_opener *ox = NULL;
        wal *wx = NULL;
        cr_assert_eq(ta_opener(props, &ox), 0);
        cr_assert_eq(wal_open(ox, "trunc", 1, WAL_ACCESS_RW, &wx, NULL), 0);
        wal_msg *first = NULL, *mid = NULL;
        cr_assert_eq(ta_append(wx, "first", NULL, &first), 0);
        cr_assert_eq(ta_append(wx, "mid", NULL, &mid), 0);
        cr_assert_eq(ta_append(wx, "last", NULL, NULL), 0);
        cr_assert_eq(wal_truncate(wx, wal_msg_id(mid), NULL), 0);
        struct wal_deliver d = { .policy = WAL_DELIVER_START_FROM, .id = wal_msg_id(first) };
        wal_scanner *s = NULL;
        int r = wal_read(wx, &d, NULL, &s, NULL);
        if (r == 0) {
                wal_msg *m = NULL;
                r = wal_scanner_next(s, 1000, &m, NULL);
                wal_scanner_close(s);
        }
        cr_assert_eq(r, -ERANGE);
        wal_msg_unref(first);
        wal_msg_unref(mid);
        wal_close(wx);
        ta_opener_close(ox);
}

/* ---- Stragglers of a fenced writer ---- */

struct spi_wait {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int done, status;
};

static void spi_done(void *arg, int status, struct wal_msgid id, const wal_error *err)
{
        struct spi_wait *sw = arg;
        (void)id;
        (void)err;
        pthread_mutex_lock(&sw->lock);
        sw->status = status;
        sw->done = 1;
        pthread_cond_broadcast(&sw->cond);
        pthread_mutex_unlock(&sw->lock);
}

/* Write one message with the given header straight through the backend
 * interface, as a writer of @term would have. */
static void spi_write(struct walimpls_wal *bw, const char *text, uint64_t tick_ms, int64_t term)
{
        wal_msg *m = ta_msg(text, NULL);
        wal_msg_set_time_tick(m, tick_ms << 18);
        wal_msg_set_term(m, term);
        struct spi_wait sw = { .lock = PTHREAD_MUTEX_INITIALIZER,
                               .cond = PTHREAD_COND_INITIALIZER };
        cr_assert_eq(bw->ops->append(bw, m, spi_done, &sw), 0);
        pthread_mutex_lock(&sw.lock);
        while (!sw.done)
                pthread_cond_wait(&sw.cond, &sw.lock);
        pthread_mutex_unlock(&sw.lock);
        cr_assert_eq(sw.status, 0);
        wal_msg_unref(m);
}

#if HAVE_LOCAL
Test(adaptor_scan, stale_term_straggler_is_dropped, .init = NULL, .fini = NULL)
{
        /* Needs a log that outlives its opener and takes any header: the
         * local backend, written through its backend interface. */
        const struct walimpls_builder *b = NULL;
        const struct t_backend_fixture *fx = t_backend_fixture_find("local");
        cr_assert(fx && wal_registry_find("local", &b, NULL) == 0,
                  "the local backend is built but not registered");
        wal_config *cfg = NULL;
        void *state = NULL;
        cr_assert_eq(wal_config_new(&cfg), 0);
        cr_assert_eq(fx->setup(cfg, &state), 0);
        struct walimpls_opener *bo = NULL;
        cr_assert_eq(b->build(cfg, &bo, NULL), 0);
        struct walimpls_open_opts oo = { .channel = "straggle", .term = 2,
                                         .access = WAL_ACCESS_RW };
        struct walimpls_wal *bw = NULL;
        cr_assert_eq(bo->ops->open(bo, &oo, &bw, NULL), 0);
        spi_write(bw, "new-1", 1000, 2);
        spi_write(bw, "old", 900, 1);   /* term 1, behind term 2's clock */
        spi_write(bw, "new-2", 1001, 2);
        spi_write(bw, "same-term-late", 950, 2); /* same term: not ours to judge */
        bw->ops->close(bw);
        bo->ops->close(bo);

        wal_opener *ol = NULL;
        wal *wl = NULL;
        cr_assert_eq(wal_opener_new("local", cfg, &ol, NULL), 0);
        cr_assert_eq(wal_open(ol, "straggle", 2, WAL_ACCESS_RO, &wl, NULL), 0);
        wal_scanner *s = open_scanner(wl, (struct wal_deliver){ .policy = WAL_DELIVER_ALL },
                                      NULL);
        char buf[256];
        cr_assert_eq(read_texts(s, 3, buf, sizeof(buf)), 3);
        cr_assert_str_eq(buf, "new-1,new-2,same-term-late");
        expect_quiet(s);
        char *json = NULL;
        cr_assert_eq(wal_stats_json(wl, &json), 0);
        cr_assert(strstr(json, "\"stale_dropped\":1"), "%s", json);
        free(json);
        wal_scanner_close(s);
        wal_close(wl);
        wal_opener_close(ol);
        fx->teardown(state);
        wal_config_free(cfg);
}
#endif /* HAVE_LOCAL */
