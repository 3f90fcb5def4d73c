/* SPDX-License-Identifier: MIT */
/*
 * tests/local/test-faults.c: I/O faults of the local backend, injected
 * through its I/O table (impls/local/local.h, local_io_set_ops), on both
 * write paths: io_uring (the shim rewrites completions) and plain
 * pwrite+fdatasync (the shim replaces the calls).
 *
 * What must hold (ecosystem-reliability Part C cases 7, 8, 9):
 *  - EIO on fdatasync: the pending appends fail -EIO with a message naming
 *    the segment file, later appends are refused -EIO, the fdatasync is
 *    never retried, and after reopen every acknowledged record is intact;
 *  - ENOSPC on a data write and on the fallocate of a new segment: the same,
 *    with -ENOSPC, and no half-made segment is left behind;
 *  - short writes are completed, never taken as whole;
 *  - an io_uring fdatasync that comes back -ECANCELED is not durability:
 *    it is issued again before the append completes;
 *  - the fallback path: when io_uring cannot be set up, local.io=auto
 *    writes with pwrite+fdatasync and says so once through the log hook;
 *    local.io=uring refuses to open instead;
 *  - the early wake (local_early): flush() callers woken as their batch's
 *    fdatasync begins return only once their record has completed, also
 *    when that fdatasync fails while they poll.
 */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <inttypes.h>

#include <wal/wal-log.h>
#include "test-faults-util.h"

#define CHANNEL "faults"
#define LEN 300

static struct tf t;

/* Check the reopened channel holds the first @n_acked records intact,
 * followed only by (some of) the records that failed, in order. */
static void check_after_reopen(size_t n_acked, size_t n_total)
{
        tf_build(&t, "auto", "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        int r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err);
        cr_assert_eq(r, 0, "reopen: %s", wal_error_message(err));
        size_t *idx = calloc(n_total + 1, sizeof(*idx));
        size_t n = tf_read_all(w, LEN, idx, n_total + 1);
        cr_assert_geq(n, n_acked, "acknowledged records lost: %zu of %zu left", n, n_acked);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(idx[i], i, "record %zu is %zu", i, idx[i]);
        free(idx);
        w->ops->close(w);
}

/* The end of a fault case whose wal is closed: close the opener, put the
 * real I/O back, check the channel as check_after_reopen() does, wait for
 * every acknowledgement and remove the directory. */
static void reopen_and_check(size_t n_acked, size_t n_total, struct acks *s)
{
        t.o->ops->close(t.o);
        t.o = NULL;
        local_io_set_ops(NULL);
        check_after_reopen(n_acked, n_total);
        acks_done(s);
        tf_teardown(&t);
}

/* Append records @from.. while the wal accepts them, at most @n; a refusal
 * must be @refused_with (0: none allowed).  Waits for every accepted one.
 * Returns how many were accepted. */
static size_t append_until(struct walimpls_wal *w, struct acks *s, size_t from, size_t n,
                           int refused_with)
{
        size_t i;
        for (i = from; i < from + n; i++) {
                int r = tf_append(w, s, i, LEN);
                if (r < 0) {
                        cr_assert(refused_with && r == refused_with, "append %zu refused: %d",
                                  i, r);
                        break;
                }
        }
        tf_wait(s);
        return i - from;
}

/* Append @n records of LEN bytes (all queued, then waited for). */
static void append_n(struct walimpls_wal *w, struct acks *s, size_t from, size_t n)
{
        for (size_t i = from; i < from + n; i++)
                cr_assert_eq(tf_append(w, s, i, LEN), 0, "append %zu refused", i);
        tf_wait(s);
}

static void eio_on_fdatasync(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct acks s;
        acks_init(&s, 100);
        append_n(w, &s, 0, 50);
        for (size_t i = 0; i < 50; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);

        /* The append that meets the failure completes with it; later
         * ones complete with it or are refused with it. */
        atomic_store(&shim.fail_fdatasync, EIO);
        size_t acc = append_until(w, &s, 50, 20, -EIO);
        cr_assert_geq(acc, 1);
        for (size_t i = 50; i < 50 + acc; i++) {
                cr_assert_eq(s.a[i].status, -EIO, "append %zu: status %d", i, s.a[i].status);
                cr_assert(wal_msgid_is_none(s.a[i].id));
                cr_assert(strstr(s.a[i].msg, "fdatasync") && strstr(s.a[i].msg, ".seg"),
                          "message does not name the file: %s", s.a[i].msg);
        }
        /* Unavailable for good, and the fdatasync is never tried again. */
        int syncs = atomic_load(&shim.n_fdatasync);
        atomic_store(&shim.fail_fdatasync, 0);
        cr_assert_eq(tf_append(w, &s, 70, LEN), -EIO);
        t_sleep_ms(50);
        cr_assert_eq(atomic_load(&shim.n_fdatasync), syncs, "fdatasync retried after failure");
        w->ops->close(w);
        reopen_and_check(50, 70, &s);
}

static void enospc_on_write(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct acks s;
        acks_init(&s, 100);
        append_n(w, &s, 0, 30);
        for (size_t i = 0; i < 30; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        atomic_store(&shim.fail_write, ENOSPC);
        size_t acc = append_until(w, &s, 30, 20, -ENOSPC);
        cr_assert_geq(acc, 1);
        for (size_t i = 30; i < 30 + acc; i++) {
                cr_assert_eq(s.a[i].status, -ENOSPC, "append %zu: status %d", i, s.a[i].status);
                cr_assert(strstr(s.a[i].msg, "write") && strstr(s.a[i].msg, ".seg"),
                          "message does not name the file: %s", s.a[i].msg);
        }
        atomic_store(&shim.fail_write, 0);
        cr_assert_eq(tf_append(w, &s, 50, LEN), -ENOSPC, "later appends must fail too");
        w->ops->close(w);
        reopen_and_check(30, 50, &s);
}

static size_t count_segments(const char *dir)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, CHANNEL);
        DIR *d = opendir(path);
        cr_assert(d);
        size_t n = 0;
        struct dirent *de;
        uint64_t first;
        while ((de = readdir(d)))
                n += local_seg_name_parse(de->d_name, &first);
        closedir(d);
        return n;
}

static void enospc_on_fallocate(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64k");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        atomic_store(&shim.fail_fallocate, ENOSPC);
        /* 64 KiB segments hold about 180 records of 300 B: 400 must roll. */
        struct acks s;
        acks_init(&s, 400);
        size_t accepted = 0;
        for (size_t i = 0; i < 400; i++) {
                int r = tf_append(w, &s, i, LEN);
                if (r < 0) {
                        cr_assert_eq(r, -ENOSPC, "append %zu refused with %d", i, r);
                        break;
                }
                accepted++;
        }
        tf_wait(&s);
        size_t ok = 0;
        while (ok < accepted && s.a[ok].status == 0)
                ok++;
        cr_assert_gt(ok, 0);
        cr_assert_lt(ok, accepted, "the roll to a new segment did not fail");
        cr_assert(strstr(s.a[ok].msg, "fallocate") && strstr(s.a[ok].msg, ".seg"),
                  "message: %s", s.a[ok].msg);
        for (size_t i = ok; i < accepted; i++)
                cr_assert_eq(s.a[i].status, -ENOSPC, "append %zu after the failure: %d", i,
                             s.a[i].status);
        w->ops->close(w);
        cr_assert_eq(count_segments(t.dir), 1, "a half-made segment was left behind");
        reopen_and_check(ok, ok, &s);
}

struct writer_arg {
        struct walimpls_wal *w;
        struct acks *s;
        size_t from, n;
};

static void *writer_thread(void *p)
{
        struct writer_arg *a = p;
        for (size_t i = a->from; i < a->from + a->n; i++)
                if (tf_append(a->w, a->s, i, LEN) < 0)
                        return (void *)1;
        return NULL;
}

static void short_writes(const char *io)
{
        shim_install();
        atomic_store(&shim.short_max, 100);
        tf_setup(&t, io, "64k");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        /* One thread, so record index order is LSN order. */
        struct acks s;
        acks_init(&s, 600);
        struct writer_arg a = { w, &s, 0, 600 };
        cr_assert_null(writer_thread(&a));
        tf_wait(&s);
        for (size_t i = 0; i < 600; i++) {
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
                cr_assert_eq(s.a[i].id.lo, i + 1);
        }
        cr_assert_gt(atomic_load(&shim.n_short), 0, "no write was shortened");
        size_t *idx = calloc(601, sizeof(*idx));
        cr_assert_eq(tf_read_all(w, LEN, idx, 601), 600);
        for (size_t i = 0; i < 600; i++)
                cr_assert_eq(idx[i], i);
        free(idx);
        w->ops->close(w);
        reopen_and_check(600, 600, &s);
}

/* Blocking appends (append, then wal.flush, which may write the batch on
 * the calling thread): an fdatasync failure there fails the record and
 * everything queued behind it, and the channel stays unavailable. */
static void eio_on_fdatasync_in_flush(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct acks s;
        acks_init(&s, 40);
        for (size_t i = 0; i < 20; i++) {
                cr_assert_eq(tf_append(w, &s, i, LEN), 0, "append %zu refused", i);
                cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
                pthread_mutex_lock(&s.mu);
                bool done = s.a[i].done;
                int st = s.a[i].status;
                pthread_mutex_unlock(&s.mu);
                cr_assert(done, "append %zu not complete when flush returned", i);
                cr_assert_eq(st, 0, "append %zu: %s", i, s.a[i].msg);
        }
        /* Queue a few; the writer thread may meet the failure before the
         * last is queued (later ones are then refused with it). */
        atomic_store(&shim.fail_fdatasync, EIO);
        size_t acc = 0;
        for (size_t i = 20; i < 25; i++, acc++) {
                int r = tf_append(w, &s, i, LEN);
                if (r < 0) {
                        cr_assert_eq(r, -EIO, "append %zu refused with %d", i, r);
                        break;
                }
        }
        cr_assert_geq(acc, 1);
        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
        pthread_mutex_lock(&s.mu);
        for (size_t i = 20; i < 20 + acc; i++) {
                cr_assert(s.a[i].done, "append %zu not complete when flush returned", i);
                cr_assert_eq(s.a[i].status, -EIO, "append %zu: status %d", i, s.a[i].status);
                cr_assert(strstr(s.a[i].msg, "fdatasync") && strstr(s.a[i].msg, ".seg"),
                          "message does not name the file: %s", s.a[i].msg);
        }
        pthread_mutex_unlock(&s.mu);
        int syncs = atomic_load(&shim.n_fdatasync);
        atomic_store(&shim.fail_fdatasync, 0);
        cr_assert_eq(tf_append(w, &s, 20 + acc, LEN), -EIO);
        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
        t_sleep_ms(50);
        cr_assert_eq(atomic_load(&shim.n_fdatasync), syncs, "fdatasync retried after failure");
        w->ops->close(w);
        reopen_and_check(20, 20 + acc, &s);
}

/* Blocking appends that roll over several small segments: the flush()
 * caller writing its own batches creates the segments too. */
static void flush_across_segments(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64k");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { N = 800 };   /* about 260 KiB of frames: four 64 KiB segments */
        struct acks s;
        acks_init(&s, N);
        for (size_t i = 0; i < N; i++) {
                cr_assert_eq(tf_append(w, &s, i, LEN), 0, "append %zu refused", i);
                cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
                pthread_mutex_lock(&s.mu);
                bool done = s.a[i].done;
                int st = s.a[i].status;
                pthread_mutex_unlock(&s.mu);
                cr_assert(done, "append %zu not complete when flush returned", i);
                cr_assert_eq(st, 0, "append %zu: %s", i, s.a[i].msg);
        }
        w->ops->close(w);
        t.o->ops->close(t.o);
        t.o = NULL;
        cr_assert_geq(count_segments(t.dir), 4, "expected the records to span segments");
        local_io_set_ops(NULL);
        check_after_reopen(N, N);
        acks_done(&s);
        tf_teardown(&t);
}

/* Wait up to @ms for ack @i; @returns whether it came. */
static bool ack_within(struct acks *s, size_t i, unsigned ms)
{
        uint64_t end = t_now_ms() + ms;
        pthread_mutex_lock(&s->mu);
        while (!s->a[i].done && t_now_ms() < end) {
                pthread_mutex_unlock(&s->mu);
                t_sleep_ms(1);
                pthread_mutex_lock(&s->mu);
        }
        bool done = s->a[i].done && s->a[i].status == 0;
        pthread_mutex_unlock(&s->mu);
        return done;
}

/* A thread that flushed after each append does not wake the writer thread
 * when it appends (its flush is expected to write the record); an append
 * it then never flushes must still complete, soon, whether it comes right
 * after the last flush or once the writer thread has slept a while. */
static void unflushed_append_after_flushes(const char *io)
{
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { ROUNDS = 3, FLUSHED = 10 };
        struct acks s;
        acks_init(&s, ROUNDS * (FLUSHED + 1));
        size_t i = 0;
        for (int round = 0; round < ROUNDS; round++) {
                for (int k = 0; k < FLUSHED; k++, i++) {
                        cr_assert_eq(tf_append(w, &s, i, LEN), 0);
                        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
                }
                /* Right after the flushes, after 20 ms, after 1.2 s (beyond
                 * any "flush was recent" window). */
                t_sleep_ms(round == 0 ? 0 : round == 1 ? 20 : 1200);
                cr_assert_eq(tf_append(w, &s, i, LEN), 0);
                cr_assert(ack_within(&s, i, 2000),
                          "round %d: an append never flushed did not complete in 2 s", round);
                i++;
        }
        tf_wait(&s);
        w->ops->close(w);
        t.o->ops->close(t.o);
        t.o = NULL;
        check_after_reopen(i, i);
        acks_done(&s);
        tf_teardown(&t);
}

Test(local_faults, unflushed_append_after_flushes_auto, .timeout = 60)
{
        unflushed_append_after_flushes("auto");
}
Test(local_faults, unflushed_append_after_flushes_sync, .timeout = 60)
{
        unflushed_append_after_flushes("sync");
}
Test(local_faults, flush_across_segments_auto, .timeout = 60) { flush_across_segments("auto"); }
Test(local_faults, flush_across_segments_sync, .timeout = 60) { flush_across_segments("sync"); }

Test(local_faults, eio_on_fdatasync_in_flush_auto, .timeout = 60)
{
        eio_on_fdatasync_in_flush("auto");
}
Test(local_faults, eio_on_fdatasync_in_flush_sync, .timeout = 60)
{
        eio_on_fdatasync_in_flush("sync");
}
Test(local_faults, eio_on_fdatasync_uring, .timeout = 60) { eio_on_fdatasync("uring"); }
Test(local_faults, eio_on_fdatasync_sync, .timeout = 60) { eio_on_fdatasync("sync"); }
Test(local_faults, enospc_on_write_uring, .timeout = 60) { enospc_on_write("uring"); }
Test(local_faults, enospc_on_write_sync, .timeout = 60) { enospc_on_write("sync"); }
Test(local_faults, enospc_on_segment_fallocate_uring, .timeout = 60)
{
        enospc_on_fallocate("uring");
}
Test(local_faults, enospc_on_segment_fallocate_sync, .timeout = 60)
{
        enospc_on_fallocate("sync");
}
Test(local_faults, short_writes_are_completed_uring, .timeout = 60) { short_writes("uring"); }
Test(local_faults, short_writes_are_completed_sync, .timeout = 60) { short_writes("sync"); }

/*
 * Read errors under read-ahead (impls/local/local.c): a replay of a sealed
 * 16 MiB segment reads chunks ahead on a helper thread.  One failed pread
 * past 5 MiB (the helper's) is not an error: the scanner reads that chunk
 * again itself, and every record comes back once, in order.  A pread that
 * keeps failing there fails the scanner with -EIO naming the segment and an
 * offset past 5 MiB, after every record before it was delivered intact.
 */
Test(local_faults, pread_eio_under_read_ahead, .timeout = 60)
{
        shim_install();
        tf_setup(&t, "sync", "16m");
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, "ra", WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { N = 24000, RLEN = 900 };   /* ~22 MiB: a sealed segment and another */
        struct acks acks;
        acks_init(&acks, N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(tf_append(w, &acks, i, RLEN), 0);
        tf_wait(&acks);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(acks.a[i].status, 0, "append %zu: %s", i, acks.a[i].msg);
        acks_done(&acks);

        static size_t idx[N];
        atomic_store(&shim.pread_eio_count, 1);
        atomic_store(&shim.pread_eio_from, (long long)5 << 20);
        size_t n = tf_read_all(w, RLEN, idx, N);
        cr_assert_eq(atomic_load(&shim.n_pread_eio), 1, "the failing pread was not reached");
        cr_assert_eq(n, (size_t)N, "%zu records after one failed read-ahead", n);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(idx[i], i, "record %zu is %zu", i, idx[i]);

        atomic_store(&shim.pread_eio_count, -1);
        struct walimpls_read_opts ro = { .name = "eio",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc;
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0);
        struct wal_msg_view v[100];
        size_t got = 0, k;
        int r;
        while ((r = sc->ops->next_batch(sc, 0, v, 100, &k, &err)) == 0) {
                for (size_t i = 0; i < k; i++, got++) {
                        char want[RLEN];
                        payload_of(got, RLEN, want);
                        cr_assert_eq(v[i].payload_len, (size_t)RLEN);
                        cr_assert_eq(memcmp(v[i].payload, want, RLEN), 0, "record %zu", got);
                }
        }
        cr_assert_eq(r, -EIO, "next_batch: %d (%s) after %zu records", r,
                     err ? wal_error_message(err) : "", got);
        const char *msg = wal_error_message(err);
        cr_assert(strstr(msg, "00000000000000000001.seg"), "%s", msg);
        unsigned long long at = 0;
        const char *o = strstr(msg, "at offset ");
        cr_assert(o && sscanf(o, "at offset %llu", &at) == 1, "%s", msg);
        cr_assert_geq(at, 4ull << 20, "%s", msg);
        cr_assert_gt(got, (size_t)4000, "only %zu records before the error", got);
        cr_assert_lt(got, (size_t)N);
        wal_error_free(err);
        sc->ops->close(sc);
        atomic_store(&shim.pread_eio_from, 0);
        w->ops->close(w);
        tf_teardown(&t);
}

/* Threads of this process (/proc/self/task). */
static int count_threads(void)
{
        DIR *d = opendir("/proc/self/task");
        cr_assert_not_null(d);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

/* Read with next_batch from record @*got on until @until records (or the
 * head when @until is 0), checking each payload; @returns the last call's
 * result. */
static int read_batches(struct walimpls_scanner *sc, size_t *got, size_t until, size_t rlen)
{
        struct wal_msg_view v[128];
        char *want = malloc(rlen);
        cr_assert(want);
        size_t k;
        int r = 0;
        wal_error *err = NULL;
        while ((until == 0 || *got < until) &&
               (r = sc->ops->next_batch(sc, 0, v, 128, &k, &err)) == 0) {
                for (size_t i = 0; i < k; i++, (*got)++) {
                        payload_of(*got, rlen, want);
                        cr_assert_eq(v[i].id.lo, (uint64_t)*got + 1);
                        cr_assert_eq(v[i].payload_len, rlen);
                        cr_assert_eq(memcmp(v[i].payload, want, rlen), 0, "record %zu", *got);
                }
        }
        wal_error_free(err);
        free(want);
        return r;
}

/*
 * The read-ahead helper lives only while a scanner replays: one more thread
 * while it reads a long run of a segment, none once it has reached the head
 * (it would otherwise hold a thread and its buffers while tailing), and
 * another when it falls behind by a long run again.
 */
Test(local_faults, read_ahead_helper_ends_at_the_head, .timeout = 60)
{
        shim_install();
        tf_setup(&t, "sync", "64m");
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, "ra", WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { N = 12000, RLEN = 900 };   /* ~11 MiB per round */
        struct acks acks;
        acks_init(&acks, 2 * N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(tf_append(w, &acks, i, RLEN), 0);
        tf_wait(&acks);
        struct walimpls_read_opts ro = { .name = "ra",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc;
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0);
        int base = count_threads();
        size_t got = 0;
        for (int round = 0; round < 2; round++) {
                size_t end = (size_t)(round + 1) * N;
                cr_assert_eq(read_batches(sc, &got, end - N + 5000, RLEN), 0);
                cr_assert_eq(count_threads(), base + 1,
                             "round %d: no read-ahead helper after 5000 records (~4.5 MiB)",
                             round);
                cr_assert_eq(read_batches(sc, &got, 0, RLEN), -ETIMEDOUT);
                cr_assert_eq(got, end, "round %d: %zu records", round, got);
                cr_assert_eq(count_threads(), base,
                             "round %d: the helper outlived the replay", round);
                if (round == 0) {
                        for (size_t i = N; i < 2 * N; i++)
                                cr_assert_eq(tf_append(w, &acks, i, RLEN), 0);
                        tf_wait(&acks);
                }
        }
        for (size_t i = 0; i < 2 * N; i++)
                cr_assert_eq(acks.a[i].status, 0, "append %zu: %s", i, acks.a[i].msg);
        acks_done(&acks);
        sc->ops->close(sc);
        w->ops->close(w);
        tf_teardown(&t);
}

static uint64_t thread_cpu_ns(void)
{
        struct timespec ts;
        cr_assert_eq(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The read-ahead's hand-offs (local.read_spin_us): a replay with the read
 * spin at 1000 us and one with it off read the same records; with it off
 * no side ever watches (every wait sleeps), and with it on a side sleeps
 * no more often than it waited.  The scanner then waits at the head of
 * the idle channel for 300 ms: its helper is gone and nobody spins (less
 * than 60 ms of CPU for the process meanwhile).
 */
static void read_spin_case(const char *spin)
{
        shim_install();
        tf_read_spin = spin;
        tf_setup(&t, "sync", "64m");
        tf_read_spin = NULL;
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, "spin", WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { N = 12000, RLEN = 900 };   /* ~11 MiB: ten read-ahead chunks */
        struct acks acks;
        acks_init(&acks, N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(tf_append(w, &acks, i, RLEN), 0);
        tf_wait(&acks);
        struct walimpls_read_opts ro = { .name = "spin",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc;
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0);
        struct local_ra_handoffs h0, h1;
        local_readahead_handoffs(&h0);
        size_t got = 0;
        cr_assert_eq(read_batches(sc, &got, 0, RLEN), -ETIMEDOUT);
        cr_assert_eq(got, (size_t)N);
        local_readahead_handoffs(&h1);
        for (int i = 0; i < 2; i++) {
                uint64_t waits = h1.waits[i] - h0.waits[i];
                uint64_t spun = h1.spun[i] - h0.spun[i];
                uint64_t sleeps = h1.sleeps[i] - h0.sleeps[i];
                if (strcmp(spin, "0") == 0) {
                        cr_assert_eq(spun, 0, "side %d watched with local.read_spin_us=0", i);
                        cr_assert_geq(sleeps, waits, "side %d: a wait without a sleep", i);
                } else {
                        cr_assert_leq(spun, waits, "side %d", i);
                }
        }
        /* at the idle head */
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        uint64_t t0 = thread_cpu_ns();
        size_t k;
        struct wal_msg_view v[4];
        cr_assert_eq(sc->ops->next_batch(sc, 300, v, 4, &k, &err), -ETIMEDOUT);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        uint64_t proc = (uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000u +
                        (uint64_t)c1.tv_nsec - (uint64_t)c0.tv_nsec;
        cr_assert_lt(thread_cpu_ns() - t0, 30000000u, "the scanner spun at the idle head");
        cr_assert_lt(proc, 60000000u, "%" PRIu64 " ns of CPU while waiting at the idle head",
                     proc);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(acks.a[i].status, 0, "append %zu: %s", i, acks.a[i].msg);
        acks_done(&acks);
        sc->ops->close(sc);
        w->ops->close(w);
        tf_teardown(&t);
}

Test(local_faults, read_ahead_spin_off_never_watches, .timeout = 60)
{
        read_spin_case("0");
}

Test(local_faults, read_ahead_spin_stops_at_the_idle_head, .timeout = 60)
{
        read_spin_case("1000");
}

Test(local_faults, cancelled_fdatasync_is_not_durability, .timeout = 60)
{
        shim_install();
        tf_setup(&t, "uring", "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct acks s;
        acks_init(&s, 4);
        /* Warm up: one append costs exactly one io_uring fdatasync. */
        append_n(w, &s, 0, 1);
        cr_assert_eq(s.a[0].status, 0);
        int before = atomic_load(&shim.n_fdatasync);
        atomic_store(&shim.cancel_sync_once, 1);
        append_n(w, &s, 1, 1);
        cr_assert_eq(s.a[1].status, 0, "%s", s.a[1].msg);
        cr_assert_eq(atomic_load(&shim.cancel_sync_once), 0, "the cancel was not injected");
        cr_assert_geq(atomic_load(&shim.n_fdatasync) - before, 2,
                      "acknowledged after a cancelled fdatasync without syncing again");
        w->ops->close(w);
        acks_done(&s);
        tf_teardown(&t);
}

/* ---- Two lanes ---- */

/*
 * Blocking appenders on many threads, local.lanes=2: while the writer
 * thread writes a batch inline, a flush() caller may write the next batch
 * beside it (lane 2, through its own fd).  The hook below holds the writer thread's
 * fdatasync until a flush() caller's fdatasync has come and returned, and
 * fails one of the two:
 *  - LANE_FAIL_CALLER: lane 2's fdatasync fails while the writer thread's
 *    (returning later) succeeds;
 *  - LANE_FAIL_THREAD: lane 2's succeeds and returns first; the writer
 *    thread's fails 20 ms later (lane 2 has had time to try to complete).
 * Either way the channel is unavailable from then on, and completions stay
 * in LSN order: the acknowledged records are exactly LSNs 1..A, all
 * acknowledged before any failure completed, every other append failed
 * -EIO (or was refused), and after reopening LSNs 1..A hold them.
 */
enum { LANE_FAIL_CALLER = 1, LANE_FAIL_THREAD = 2 };

static _Thread_local bool lane_caller;   /* set on the test's appending threads */
static struct {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int mode;
        bool held;                       /* the writer thread's fdatasync is held */
        int thread_fd, caller_fd;
        bool caller_returned, met;
} lt = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static int lane_hook(int fd, const struct local_io_ops *d)
{
        pthread_mutex_lock(&lt.mu);
        if (!lane_caller && !lt.held && !lt.met) {
                lt.held = true;
                lt.thread_fd = fd;
                uint64_t end = t_now_ms() + 3000;
                while (!lt.caller_returned && t_now_ms() < end) {
                        struct timespec ts = walu_deadline(10);
                        pthread_cond_timedwait(&lt.cv, &lt.mu, &ts);
                }
                bool met = lt.caller_returned;
                lt.met = met;
                lt.held = met;      /* not met: let the next one try */
                pthread_mutex_unlock(&lt.mu);
                if (met && lt.mode == LANE_FAIL_THREAD) {
                        t_sleep_ms(20);
                        return -EIO;
                }
                return d->fdatasync(d->ctx, fd);
        }
        if (lane_caller && lt.held && !lt.met && !lt.caller_returned) {
                lt.caller_fd = fd;
                pthread_mutex_unlock(&lt.mu);
                int r = lt.mode == LANE_FAIL_CALLER ? -EIO : d->fdatasync(d->ctx, fd);
                pthread_mutex_lock(&lt.mu);
                lt.caller_returned = true;
                pthread_cond_broadcast(&lt.cv);
                pthread_mutex_unlock(&lt.mu);
                return r;
        }
        pthread_mutex_unlock(&lt.mu);
        return d->fdatasync(d->ctx, fd);
}

enum { LANE_THREADS = 8, LANE_ROUNDS = 300, LANE_MAX = LANE_THREADS * LANE_ROUNDS };

struct lane_arg {
        struct walimpls_wal *w;
        struct acks *s;
        atomic_size_t *next;
        int refused;                     /* what append refused with (0: none) */
};

static void *lane_thread(void *p)
{
        struct lane_arg *a = p;
        lane_caller = true;
        for (int k = 0; k < LANE_ROUNDS; k++) {
                size_t i = atomic_fetch_add(a->next, 1);
                int r = tf_append(a->w, a->s, i, LEN);
                if (r < 0) {
                        a->refused = r;
                        break;
                }
                if (walimpls_flush(a->w, -1, NULL) != 0) {
                        a->refused = -EPROTO;
                        break;
                }
        }
        return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/*
 * The completions of appends 0..@n-1 recorded in @s (borrowed), made by
 * several threads while fdatasyncs may fail: every failure is -EIO (its
 * message naming the segment file when @names_file) and comes after every
 * success, and the acknowledged LSNs are exactly 1..A.  @expect_fail: at
 * least one append failed; else every append was acknowledged.  Returns A.
 */
static size_t check_acked_prefix(struct acks *s, size_t n, bool expect_fail, bool names_file)
{
        uint64_t *lsns = calloc(n + 1, sizeof(*lsns));
        cr_assert(lsns);
        size_t acked = 0, failed = 0;
        uint64_t last_ok_seq = 0, first_fail_seq = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
                struct ack *a = &s->a[i];
                if (!a->done)
                        continue;   /* refused at append */
                if (a->status == 0) {
                        lsns[acked++] = a->id.lo;
                        last_ok_seq = WALU_MAX(last_ok_seq, a->seq);
                } else {
                        cr_assert_eq(a->status, -EIO, "append %zu: status %d", i, a->status);
                        cr_assert(wal_msgid_is_none(a->id));
                        if (names_file)
                                cr_assert(strstr(a->msg, "fdatasync") && strstr(a->msg, ".seg"),
                                          "message does not name the file: %s", a->msg);
                        failed++;
                        first_fail_seq = WALU_MIN(first_fail_seq, a->seq);
                }
        }
        if (expect_fail)
                cr_assert_gt(failed, 0, "no append failed");
        else
                cr_assert_eq(acked, n, "%zu of %zu appends acknowledged", acked, n);
        cr_assert_lt(last_ok_seq, first_fail_seq,
                     "an append was acknowledged after another had failed");
        qsort(lsns, acked, sizeof(*lsns), cmp_u64);
        for (size_t k = 0; k < acked; k++)
                cr_assert_eq(lsns[k], k + 1, "acknowledged LSNs are not 1..%zu: #%zu is %"
                             PRIu64 " (a batch acknowledged past a failed one)", acked, k,
                             lsns[k]);
        free(lsns);
        return acked;
}

/*
 * reopen_and_check() for appends made by several threads, whose records
 * are not in index order: close @w (given) and the test's opener, take the
 * fault shim out, reopen the channel and check it: LSN l holds the record
 * acknowledged with it; anything after the @acked acknowledged ones is a
 * failed append of @s (borrowed), intact, at most once.  Then release @s
 * and tear the test down.
 */
static void reopen_and_check_acks(struct walimpls_wal *w, struct acks *s, size_t n,
                                  size_t acked)
{
        w->ops->close(w);
        t.o->ops->close(t.o);
        t.o = NULL;
        shim_fdatasync_hook = NULL;
        local_io_set_ops(NULL);
        tf_build(&t, "auto", "64m");
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "reopen: %s",
                     wal_error_message(err));
        size_t *idx = calloc(n + 1, sizeof(*idx));
        cr_assert(idx);
        size_t got = tf_read_all(w, LEN, idx, n + 1);
        cr_assert_geq(got, acked, "acknowledged records lost: %zu of %zu left", got, acked);
        for (size_t i = 0; i < n; i++) {
                struct ack *a = &s->a[i];
                if (a->done && a->status == 0)
                        cr_assert_eq(idx[a->id.lo - 1], i, "LSN %" PRIu64 " holds record %zu,"
                                     " acknowledged for %zu", a->id.lo, idx[a->id.lo - 1], i);
        }
        bool *seen = calloc(n + 1, sizeof(*seen));
        cr_assert(seen);
        for (size_t k = acked; k < got; k++) {
                cr_assert_lt(idx[k], n);
                cr_assert(s->a[idx[k]].done && s->a[idx[k]].status == -EIO,
                          "LSN %zu holds record %zu, which was not a failed append", k + 1,
                          idx[k]);
                cr_assert(!seen[idx[k]], "record %zu twice", idx[k]);
                seen[idx[k]] = true;
        }
        free(seen);
        free(idx);
        w->ops->close(w);
        acks_done(s);
        tf_teardown(&t);
}

static void lane_failure(const char *io, int mode)
{
        shim_install();
        tf_lanes = "2";
        tf_setup(&t, io, "64m");
        tf_lanes = NULL;
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        pthread_mutex_lock(&lt.mu);
        lt.mode = mode;
        lt.held = lt.caller_returned = lt.met = false;
        lt.thread_fd = lt.caller_fd = -1;
        pthread_mutex_unlock(&lt.mu);
        shim_fdatasync_hook = lane_hook;   /* after the open's own fdatasyncs */

        struct acks s;
        acks_init(&s, LANE_MAX + 1);
        atomic_size_t next = 0;
        struct lane_arg args[LANE_THREADS];
        pthread_t th[LANE_THREADS];
        for (int i = 0; i < LANE_THREADS; i++) {
                args[i] = (struct lane_arg){ w, &s, &next, 0 };
                cr_assert_eq(pthread_create(&th[i], NULL, lane_thread, &args[i]), 0);
        }
        for (int i = 0; i < LANE_THREADS; i++)
                pthread_join(th[i], NULL);
        tf_wait(&s);
        size_t n = atomic_load(&next);
        cr_assert(lt.met, "no flush() caller's fdatasync came while the writer thread's was "
                  "held: the second lane was not used");
        cr_assert_neq(lt.caller_fd, lt.thread_fd, "both lanes synced through fd %d",
                      lt.thread_fd);
        for (int i = 0; i < LANE_THREADS; i++)
                cr_assert(args[i].refused == 0 || args[i].refused == -EIO,
                          "thread %d: append refused with %d", i, args[i].refused);

        /* Completions: acknowledged = LSNs 1..A, each before any failure. */
        size_t acked = check_acked_prefix(&s, n, true, true);

        /* Unavailable for good; no fdatasync retried. */
        int syncs = atomic_load(&shim.n_fdatasync);
        cr_assert_eq(tf_append(w, &s, n, LEN), -EIO);
        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
        t_sleep_ms(50);
        cr_assert_eq(atomic_load(&shim.n_fdatasync), syncs, "fdatasync retried after failure");
        reopen_and_check_acks(w, &s, n, acked);
}

Test(local_faults, lane2_fdatasync_fails_thread_lane_succeeds_auto, .timeout = 60)
{
        lane_failure("auto", LANE_FAIL_CALLER);
}
Test(local_faults, lane2_fdatasync_fails_thread_lane_succeeds_sync, .timeout = 60)
{
        lane_failure("sync", LANE_FAIL_CALLER);
}
Test(local_faults, thread_lane_fdatasync_fails_lane2_succeeds_auto, .timeout = 60)
{
        lane_failure("auto", LANE_FAIL_THREAD);
}
Test(local_faults, thread_lane_fdatasync_fails_lane2_succeeds_sync, .timeout = 60)
{
        lane_failure("sync", LANE_FAIL_THREAD);
}


/* ---- Early wake ---- */

/*
 * Blocking appenders on many threads with the early wake forced on
 * (local_early_wake_always; it is otherwise used only when the rest of the
 * machine leaves the CPUs idle): the writer thread wakes a batch's sleeping
 * flush() callers as its fdatasync begins, and they poll for its end.
 * flush() must still return only once the caller's record has completed:
 * each thread looks, when its flush() returns, whether its record's
 * completion has run.  With @fail_at, the writer's fdatasyncs from that
 * count on wait 5 ms (the woken callers are polling) and fail with -EIO:
 * every accepted append then completes, acknowledged ones are LSNs 1..A
 * and all completed before any failure, the others fail -EIO, and no
 * flush() hangs.  After reopening, LSN l holds the record acknowledged
 * with it.
 */
enum { EW_THREADS = 8, EW_ROUNDS = 250, EW_MAX = EW_THREADS * EW_ROUNDS };

static atomic_int ew_fail_at;           /* fdatasync count from which they fail (0: none) */

static int ew_hook(int fd, const struct local_io_ops *d)
{
        int at = atomic_load(&ew_fail_at);
        if (at && atomic_load(&shim.n_fdatasync) >= at) {
                t_sleep_ms(5);
                return -EIO;
        }
        return d->fdatasync(d->ctx, fd);
}

struct ew_arg {
        struct walimpls_wal *w;
        struct acks *s;
        atomic_size_t *next;
        int refused;                     /* what append or flush refused with (0: none) */
        size_t returned_early;           /* flush() returned before the completion ran */
};

static void *ew_thread(void *p)
{
        struct ew_arg *a = p;
        for (int k = 0; k < EW_ROUNDS; k++) {
                size_t i = atomic_fetch_add(a->next, 1);
                int r = tf_append(a->w, a->s, i, LEN);
                if (r < 0) {
                        a->refused = r;
                        break;
                }
                r = walimpls_flush(a->w, -1, NULL);
                pthread_mutex_lock(&a->s->mu);
                bool done = a->s->a[i].done;
                pthread_mutex_unlock(&a->s->mu);
                if (!done)
                        a->returned_early++;
                if (r != 0) {
                        a->refused = -EPROTO;
                        break;
                }
        }
        return NULL;
}

static void early_wake_appenders(const char *io, int fail_at)
{
        shim_install();
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        local_early_wake_always(true);
        atomic_store(&ew_fail_at, fail_at ? atomic_load(&shim.n_fdatasync) + fail_at : 0);
        shim_fdatasync_hook = ew_hook;
        uint64_t early0 = local_early_wakes();

        struct acks s;
        acks_init(&s, EW_MAX + 1);
        atomic_size_t next = 0;
        struct ew_arg args[EW_THREADS];
        pthread_t th[EW_THREADS];
        for (int i = 0; i < EW_THREADS; i++) {
                args[i] = (struct ew_arg){ w, &s, &next, 0, 0 };
                cr_assert_eq(pthread_create(&th[i], NULL, ew_thread, &args[i]), 0);
        }
        for (int i = 0; i < EW_THREADS; i++)
                pthread_join(th[i], NULL);
        tf_wait(&s);
        local_early_wake_always(false);
        uint64_t early = local_early_wakes() - early0;
        size_t n = atomic_load(&next);
        for (int i = 0; i < EW_THREADS; i++) {
                cr_assert_eq(args[i].returned_early, 0, "thread %d: flush() returned %zu times "
                             "before the record had completed", i, args[i].returned_early);
                cr_assert(args[i].refused == 0 || (fail_at && args[i].refused == -EIO),
                          "thread %d: refused with %d", i, args[i].refused);
        }
        if (!fail_at)
                cr_assert_gt(early, 0, "no batch's waiters were woken early");

        /* Completions: acknowledged = LSNs 1..A, each before any failure. */
        size_t acked = check_acked_prefix(&s, n, fail_at != 0, false);
        reopen_and_check_acks(w, &s, n, acked);
}

Test(local_early, blocking_appenders_woken_early_auto, .timeout = 60)
{
        early_wake_appenders("auto", 0);
}
Test(local_early, blocking_appenders_woken_early_sync, .timeout = 60)
{
        early_wake_appenders("sync", 0);
}
Test(local_early, fdatasync_fails_while_waiters_poll_auto, .timeout = 60)
{
        early_wake_appenders("auto", 100);
}
Test(local_early, fdatasync_fails_while_waiters_poll_sync, .timeout = 60)
{
        early_wake_appenders("sync", 100);
}

/*
 * A flush() caller that polls for its batch (the early poll, forced on)
 * still honours its timeout: while the writer thread is inside a 400 ms
 * fdatasync of an earlier record, flush(30 ms) of a later one returns
 * -ETIMEDOUT after about 30 ms (not when the batch completes), and a
 * flush(-1) after it returns once the record has completed.
 */
static atomic_int slow_in;              /* fdatasyncs that entered slow_hook */
static atomic_bool slow_on;

static int slow_hook(int fd, const struct local_io_ops *d)
{
        if (atomic_load(&slow_on)) {
                atomic_fetch_add(&slow_in, 1);
                t_sleep_ms(400);
        }
        return d->fdatasync(d->ctx, fd);
}

static void poll_timeout(const char *io)
{
        shim_install();
        tf_setup(&t, io, "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        local_early_wake_always(true);
        shim_fdatasync_hook = slow_hook;
        struct acks s;
        acks_init(&s, 4);
        cr_assert_eq(tf_append(w, &s, 0, LEN), 0);
        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
        /* Record 1, never flushed: the writer thread takes it (its timer)
         * and sits in the slow fdatasync. */
        atomic_store(&slow_on, true);
        cr_assert_eq(tf_append(w, &s, 1, LEN), 0);
        uint64_t t0 = t_now_ms();
        while (atomic_load(&slow_in) == 0 && t_now_ms() - t0 < 5000)
                t_sleep_ms(1);
        cr_assert_gt(atomic_load(&slow_in), 0, "the writer thread never synced record 1");
        atomic_store(&slow_on, false);
        cr_assert_eq(tf_append(w, &s, 2, LEN), 0);
        uint64_t t1 = t_now_ms();
        int r = walimpls_flush(w, 30, &err);
        uint64_t took = t_now_ms() - t1;
        cr_assert_eq(r, -ETIMEDOUT, "flush(30 ms) returned %d after %" PRIu64 " ms", r, took);
        wal_error_free(err);
        err = NULL;
        cr_assert(took >= 25 && took < 300, "flush(30 ms) took %" PRIu64 " ms", took);
        cr_assert_eq(walimpls_flush(w, -1, NULL), 0);
        pthread_mutex_lock(&s.mu);
        bool done = s.a[2].done && s.a[2].status == 0;
        pthread_mutex_unlock(&s.mu);
        cr_assert(done, "flush(-1) returned before record 2 completed");
        tf_wait(&s);
        local_early_wake_always(false);
        for (size_t i = 0; i < 3; i++)
                cr_assert_eq(s.a[i].status, 0, "record %zu: %d", i, s.a[i].status);
        w->ops->close(w);
        acks_done(&s);
        tf_teardown(&t);
}

Test(local_early, polling_flush_honours_its_timeout_auto, .timeout = 60)
{
        poll_timeout("auto");
}
Test(local_early, polling_flush_honours_its_timeout_sync, .timeout = 60)
{
        poll_timeout("sync");
}

/*
 * io_uring batches in flight at once use one open file each (a write-back
 * error is reported once per open file, so on a shared fd a later batch's
 * fdatasync could take an earlier batch's error and the earlier one report
 * success).  Seen from the completions: on each fd, a batch's write
 * completes, then its fdatasync (again after a short write or a cancelled
 * sync); two writes on one fd with no fdatasync between them are two
 * batches in flight on it.
 */
#define UFD_MAX 4096
static pthread_mutex_t ufd_mu = PTHREAD_MUTEX_INITIALIZER;
static bool ufd_open_write[UFD_MAX];   /* a write completed, its fdatasync not yet */
static bool ufd_seen[UFD_MAX];
static int ufd_shared;                 /* writes found on a fd already in flight */

static void ufd_note(enum local_io_kind kind, int fd)
{
        if (fd < 0 || fd >= UFD_MAX)
                return;
        pthread_mutex_lock(&ufd_mu);
        if (kind == LOCAL_IO_WRITE) {
                if (ufd_open_write[fd])
                        ufd_shared++;
                ufd_open_write[fd] = true;
        } else {
                ufd_open_write[fd] = false;
        }
        ufd_seen[fd] = true;
        pthread_mutex_unlock(&ufd_mu);
}

Test(local_faults, uring_batches_in_flight_use_one_file_each, .timeout = 60)
{
        shim_install();
        memset(ufd_open_write, 0, sizeof(ufd_open_write));
        memset(ufd_seen, 0, sizeof(ufd_seen));
        ufd_shared = 0;
        shim_uring_seen = ufd_note;
        tf_setup(&t, "uring", "64m");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { N = 20000 };
        struct acks s;
        acks_init(&s, N);
        append_n(w, &s, 0, N);
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        w->ops->close(w);
        pthread_mutex_lock(&ufd_mu);
        int fds = 0;
        for (int i = 0; i < UFD_MAX; i++)
                fds += ufd_seen[i];
        int shared = ufd_shared;
        pthread_mutex_unlock(&ufd_mu);
        cr_assert_eq(shared, 0, "%d io_uring writes went to a fd with another batch in flight",
                     shared);
        cr_assert_geq(fds, 2, "only %d fd saw io_uring completions: no two batches were in "
                      "flight at once, so this checked nothing", fds);
        reopen_and_check(N, N, &s);
}

/* ---- The preparer (local.prepare=zero) ---- */

/*
 * The preparer writes zeros over the segment's blocks ahead of the write
 * head while appends go on (impls/local/local.c, prep_main).  Rounds of
 * 500 appends (waited for) into 1 MiB segments: the head passes 128 KiB, the
 * preparer starts, and keeps zeroing ahead of it across segment rolls.  It
 * must have written zeros (through its own fd), no append may fail, and
 * after a reopen every record is there intact (zeros written over a frame
 * would fail its CRC or end the log early).
 */
static void prepare_zeroes_ahead(const char *io)
{
        shim_install();
        tf_setup(&t, io, "1m");
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { ROUNDS = 16, PER = 500, N = ROUNDS * PER };   /* ~2.7 MiB of frames */
        struct acks s;
        acks_init(&s, N);
        for (size_t r = 0; r < ROUNDS; r++) {
                for (size_t i = r * PER; i < (r + 1) * PER; i++)
                        cr_assert_eq(tf_append(w, &s, i, LEN), 0, "append %zu", i);
                tf_wait(&s);
                /* Let the preparer run between rounds (it is a thread of
                 * its own; a busy machine may delay it). */
                for (int k = 0; k < 200 && atomic_load(&shim.n_zero_writes) == 0; k++)
                        usleep(1000);
        }
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        cr_assert_gt(atomic_load(&shim.n_zero_writes), 0, "the preparer wrote nothing");
        int zfd = atomic_load(&shim.zero_fd);
        cr_assert_gt(atomic_load(&shim.zero_bytes), 256 << 10, "only %lld bytes of zeros",
                     (long long)atomic_load(&shim.zero_bytes));
        w->ops->close(w);
        /* Its fd is closed with the writer. */
        cr_assert(fcntl(zfd, F_GETFD) < 0 && errno == EBADF, "the preparer's fd %d is open",
                  zfd);
        reopen_and_check(N, N, &s);
}

Test(local_prepare, zeroes_ahead_of_the_head_auto, .timeout = 60) { prepare_zeroes_ahead("auto"); }
Test(local_prepare, zeroes_ahead_of_the_head_sync, .timeout = 60) { prepare_zeroes_ahead("sync"); }
Test(local_prepare, zeroes_ahead_of_the_head_uring, .timeout = 60)
{
        prepare_zeroes_ahead("uring");
}

static atomic_int prep_warnings;

static void prep_log(void *arg, int level, const char *msg)
{
        (void)arg;
        if (level == WAL_LOG_WARNING && strstr(msg, "preparing") &&
            strstr(msg, "no longer prepared"))
                atomic_fetch_add(&prep_warnings, 1);
}

static int fail_zero_fd_sync(int fd, const struct local_io_ops *d)
{
        if (fd == atomic_load(&shim.zero_fd)) {
                atomic_fetch_add(&shim.n_zero_fail, 1);
                return -EIO;
        }
        return d->fdatasync(d->ctx, fd);
}

/*
 * A failure of the preparer (ENOSPC on its write of zeros, EIO on its own
 * fdatasync) fails no append: it says so once and stops, and appends go on
 * into the preallocated space; every record survives a reopen.
 */
static void prepare_fails(const char *io, bool on_sync)
{
        shim_install();
        atomic_store(&prep_warnings, 0);
        if (on_sync)
                shim_fdatasync_hook = fail_zero_fd_sync;
        else
                atomic_store(&shim.fail_zero_write, ENOSPC);
        wal_set_log_hook(prep_log, NULL);
        tf_setup(&t, io, "4m");
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        enum { ROUNDS = 12, PER = 500, N = ROUNDS * PER };
        struct acks s;
        acks_init(&s, N);
        for (size_t r = 0; r < ROUNDS; r++) {
                for (size_t i = r * PER; i < (r + 1) * PER; i++)
                        cr_assert_eq(tf_append(w, &s, i, LEN), 0, "append %zu", i);
                tf_wait(&s);
                if (r != 1)
                        continue;
                /* Two rounds (over 256 KiB) took the head past the point
                 * where the preparer starts: wait for its failed attempt
                 * however long the machine makes it wait (it used to get
                 * 200 ms a round, and under load the whole run could end
                 * before its first write), then append ten more rounds
                 * after it. */
                for (int k = 0; k < 10000 && atomic_load(&prep_warnings) == 0; k++)
                        usleep(1000);
                cr_assert_eq(atomic_load(&prep_warnings), 1,
                             "no warning from the preparer 10 s after the head passed its "
                             "start (zero writes %d, failed %d, last zero fd %d)",
                             atomic_load(&shim.n_zero_writes), atomic_load(&shim.n_zero_fail),
                             atomic_load(&shim.zero_fd));
        }
        for (size_t i = 0; i < N; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        cr_assert_gt(atomic_load(&shim.n_zero_fail), 0, "the preparer's %s was not failed",
                     on_sync ? "fdatasync" : "write");
        cr_assert_eq(atomic_load(&prep_warnings), 1, "%d warnings", atomic_load(&prep_warnings));
        /* It stopped: one failed attempt, nothing after. */
        cr_assert_eq(atomic_load(&shim.n_zero_fail), 1);
        w->ops->close(w);
        wal_set_log_hook(NULL, NULL);
        reopen_and_check(N, N, &s);
}

Test(local_prepare, enospc_writing_zeros_fails_no_append_auto, .timeout = 60)
{
        prepare_fails("auto", false);
}
Test(local_prepare, enospc_writing_zeros_fails_no_append_sync, .timeout = 60)
{
        prepare_fails("sync", false);
}
Test(local_prepare, eio_on_the_preparers_fdatasync_fails_no_append, .timeout = 60)
{
        prepare_fails("auto", true);
}

/*
 * Close stops the preparer: opened, written past the point where it starts
 * and closed at once (it may be writing zeros), 20 times: no hang, no thread
 * left; a read-only open starts none (no writer, nothing written).
 */
Test(local_prepare, close_stops_it_and_read_only_opens_have_none, .timeout = 60)
{
        shim_install();
        tf_setup(&t, "auto", "64m");
        int base = count_threads();
        enum { N = 1000, ROUNDS = 20 };    /* ~330 KiB a round: past the preparer's start */
        struct acks s;
        acks_init(&s, (size_t)ROUNDS * N);
        for (int round = 0; round < ROUNDS; round++) {
                struct walimpls_wal *w;
                wal_error *err = NULL;
                cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                             wal_error_message(err));
                for (size_t i = (size_t)round * N; i < (size_t)(round + 1) * N; i++)
                        cr_assert_eq(tf_append(w, &s, i, LEN), 0);
                w->ops->close(w);
                cr_assert_eq(s.pending, 0, "round %d: close left appends pending", round);
                cr_assert_eq(count_threads(), base, "round %d: threads left after close",
                             round);
        }
        for (size_t i = 0; i < (size_t)ROUNDS * N; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        acks_done(&s);
        cr_assert_gt(atomic_load(&shim.n_zero_writes), 0, "the preparer never ran");
        int before = atomic_load(&shim.n_zero_writes);
        struct walimpls_wal *r;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RO, 1, &r, &err), 0, "%s",
                     wal_error_message(err));
        size_t n = tf_read_all(r, LEN, NULL, (size_t)ROUNDS * N + 1);
        cr_assert_eq(n, (size_t)ROUNDS * N);
        usleep(20000);
        cr_assert_eq(atomic_load(&shim.n_zero_writes), before, "a read-only open wrote zeros");
        r->ops->close(r);
        tf_teardown(&t);
}

/* ---- Fallback ---- */

static atomic_int fallback_logs;

static void count_log(void *arg, int level, const char *msg)
{
        (void)arg;
        if (level == WAL_LOG_WARNING && strstr(msg, "io_uring unavailable") &&
            strstr(msg, "pwrite+fdatasync"))
                atomic_fetch_add(&fallback_logs, 1);
}

Test(local_fallback, auto_falls_back_to_sync_and_says_so_once, .timeout = 60)
{
        shim_install();
        atomic_store(&shim.probe_err, ENOSYS);
        wal_set_log_hook(count_log, NULL);
        tf_setup(&t, "auto", "64k");
        struct walimpls_wal *w1 = NULL, *w2 = NULL;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, "one", WAL_ACCESS_RW, 1, &w1, &err), 0, "%s",
                     wal_error_message(err));
        cr_assert_eq(tf_open(&t, "two", WAL_ACCESS_RW, 1, &w2, &err), 0, "%s",
                     wal_error_message(err));
        cr_assert_eq(atomic_load(&fallback_logs), 1, "fallback logged %d times",
                     atomic_load(&fallback_logs));
        /* The sync path really writes: its pwrites go through the shim (the
         * io_uring path would not call it). */
        struct acks s;
        acks_init(&s, 500);
        struct writer_arg a1 = { w1, &s, 0, 250 }, a2 = { w2, &s, 250, 250 };
        pthread_t th1, th2;
        pthread_create(&th1, NULL, writer_thread, &a1);
        pthread_create(&th2, NULL, writer_thread, &a2);
        void *r1, *r2;
        pthread_join(th1, &r1);
        pthread_join(th2, &r2);
        cr_assert_null(r1);
        cr_assert_null(r2);
        tf_wait(&s);
        for (size_t i = 0; i < 500; i++)
                cr_assert_eq(s.a[i].status, 0, "append %zu: %s", i, s.a[i].msg);
        cr_assert_gt(atomic_load(&shim.n_writes), 0, "the sync path was not used");
        size_t idx[251];
        cr_assert_eq(tf_read_all(w1, LEN, idx, 251), 250);
        for (size_t i = 0; i < 250; i++)
                cr_assert_eq(idx[i], i);
        cr_assert_eq(tf_read_all(w2, LEN, idx, 251), 250);
        for (size_t i = 0; i < 250; i++)
                cr_assert_eq(idx[i], 250 + i);
        w1->ops->close(w1);
        w2->ops->close(w2);
        cr_assert_eq(atomic_load(&fallback_logs), 1);
        acks_done(&s);
        wal_set_log_hook(NULL, NULL);
        tf_teardown(&t);
}

Test(local_fallback, forced_uring_refuses_when_unavailable, .timeout = 60)
{
        shim_install();
        atomic_store(&shim.probe_err, ENOSYS);
        tf_setup(&t, "uring", "64k");
        struct walimpls_wal *w = NULL;
        wal_error *err = NULL;
        int r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err);
        cr_assert_eq(r, -ENOSYS);
        cr_assert(strstr(wal_error_message(err), "io_uring"), "%s", wal_error_message(err));
        wal_error_free(err);
        /* The failed open left the channel free for the next writer. */
        atomic_store(&shim.probe_err, 0);
        err = NULL;
        r = tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err);
        cr_assert_eq(r, 0, "%s", wal_error_message(err));
        w->ops->close(w);
        tf_teardown(&t);
}

/* ---- Replay beside a live writer ---- */

/*
 * A scanner replays a channel while another thread keeps appending to it:
 * it falls behind (read-ahead starts, its chunks limited by the durable end
 * known when they are queued, the preparer zeroing ahead of the write head)
 * and catches up (the helper stops at the head), over and over, across
 * segment rolls, with frames of 200 B to 300 KiB (larger than the
 * read-ahead's carried head: the scanner drops the helper and reads them
 * itself) cut by chunk ends anywhere, and next() and next_batch() mixed
 * (with two lanes the appender also flushes after every 8th record, so
 * that its flush() may write batches beside the writer thread's).
 * Every record is read exactly once, in order, with its payload, and the
 * channel reads back whole after reopening.
 */
enum { LIVE_N = 24000 };

static size_t live_len(size_t i)
{
        if (i % 1009 == 500)
                return 300000;
        if (i % 97 == 13)
                return 40000 + i % 5000;
        return 200 + i % 700;
}

struct live_appender {
        struct walimpls_wal *w;
        struct acks *acks;
        bool flush;                      /* flush every 8th record (lane 2 with lanes=2) */
        atomic_size_t appended;
        int failed;                      /* first append error (0: none) */
};

static void *live_append_main(void *arg)
{
        struct live_appender *la = arg;
        char *buf = malloc(300000);
        for (size_t i = 0; buf && i < LIVE_N; i++) {
                size_t len = live_len(i);
                payload_of(i, len, buf);
                wal_msg *m = NULL;
                struct ack_arg *aa = malloc(sizeof(*aa));
                if (!aa || wal_msg_new(WAL_MSG_DATA, buf, len, &m) < 0) {
                        la->failed = -ENOMEM;
                        free(aa);
                        break;
                }
                *aa = (struct ack_arg){ la->acks, i };
                pthread_mutex_lock(&la->acks->mu);
                la->acks->pending++;
                pthread_mutex_unlock(&la->acks->mu);
                int r = la->w->ops->append(la->w, m, on_ack, aa);
                wal_msg_unref(m);
                if (r < 0) {
                        pthread_mutex_lock(&la->acks->mu);
                        la->acks->pending--;
                        pthread_mutex_unlock(&la->acks->mu);
                        free(aa);
                        la->failed = r;
                        break;
                }
                atomic_store(&la->appended, i + 1);
                if (la->flush && i % 8 == 7 && (r = walimpls_flush(la->w, -1, NULL)) < 0) {
                        la->failed = r;
                        break;
                }
                /* bursts and pauses: the scanner falls behind, then catches up */
                if (i % 4000 == 3999)
                        usleep(30000);
        }
        free(buf);
        return NULL;
}

static void live_check(size_t got, const uint8_t *p, size_t plen, uint64_t lsn, char *want)
{
        cr_assert_eq(lsn, (uint64_t)got + 1, "record %zu came with LSN %" PRIu64, got, lsn);
        size_t len = live_len(got);
        cr_assert_eq(plen, len, "record %zu: %zu bytes, expected %zu", got, plen, len);
        payload_of(got, len, want);
        cr_assert_eq(memcmp(p, want, len), 0, "record %zu: payload differs", got);
}

static void replay_beside_live_writer(const char *io, const char *lanes, int zero_delay_us)
{
        shim_install();
        atomic_store(&shim.zero_delay_us, zero_delay_us);
        tf_lanes = lanes;
        tf_setup(&t, io, "8m");
        tf_lanes = NULL;
        struct walimpls_wal *w;
        wal_error *err = NULL;
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RW, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct acks acks;
        acks_init(&acks, LIVE_N);
        struct live_appender la = { .w = w, .acks = &acks, .flush = lanes != NULL };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, live_append_main, &la), 0);

        struct walimpls_read_opts ro = { .name = "live",
                                         .deliver = { .policy = WAL_DELIVER_ALL } };
        struct walimpls_scanner *sc;
        cr_assert_eq(w->ops->read(w, &ro, &sc, &err), 0, "%s", wal_error_message(err));
        char *want = malloc(300000);
        cr_assert(want);
        struct wal_msg_view v[200];
        size_t got = 0;
        unsigned call = 0;
        while (got < LIVE_N) {
                int r;
                call++;
                if (call % 3 == 0) {
                        wal_msg *m = NULL;
                        r = sc->ops->next(sc, 5000, &m, &err);
                        cr_assert_eq(r, 0, "next at record %zu: %s", got,
                                     wal_error_message(err));
                        size_t plen = 0;
                        const void *p = wal_msg_payload(m, &plen);
                        live_check(got, p, plen, wal_msg_id(m).lo, want);
                        wal_msg_unref(m);
                        got++;
                } else {
                        size_t k = 0, max = 1 + call % 200;
                        r = sc->ops->next_batch(sc, 5000, v, max, &k, &err);
                        cr_assert_eq(r, 0, "next_batch at record %zu: %s", got,
                                     wal_error_message(err));
                        cr_assert(k > 0 && k <= max);
                        for (size_t i = 0; i < k; i++, got++)
                                live_check(got, v[i].payload, v[i].payload_len, v[i].id.lo,
                                           want);
                }
                /* now and then stop reading for a while: fall behind */
                if (call % 700 == 0)
                        usleep(20000);
        }
        wal_msg *extra = NULL;
        cr_assert_eq(sc->ops->next(sc, 50, &extra, &err), -ETIMEDOUT,
                     "a record after the last one appended");
        wal_error_free(err);
        err = NULL;
        sc->ops->close(sc);
        pthread_join(th, NULL);
        cr_assert_eq(la.failed, 0, "append failed: %d", la.failed);
        tf_wait(&acks);
        for (size_t i = 0; i < LIVE_N; i++)
                cr_assert_eq(acks.a[i].status, 0, "append %zu: %s", i, acks.a[i].msg);
        w->ops->close(w);
        acks_done(&acks);
        /* reopened: every record intact (nothing overwritten by zeros) */
        cr_assert_eq(tf_open(&t, CHANNEL, WAL_ACCESS_RO, 1, &w, &err), 0, "%s",
                     wal_error_message(err));
        struct walimpls_scanner *s2;
        cr_assert_eq(w->ops->read(w, &ro, &s2, &err), 0, "%s", wal_error_message(err));
        got = 0;
        for (;;) {
                size_t k = 0;
                int r = s2->ops->next_batch(s2, 0, v, 200, &k, &err);
                if (r == -ETIMEDOUT)
                        break;
                cr_assert_eq(r, 0, "reopened, at record %zu: %s", got, wal_error_message(err));
                for (size_t i = 0; i < k; i++, got++)
                        live_check(got, v[i].payload, v[i].payload_len, v[i].id.lo, want);
        }
        cr_assert_eq(got, (size_t)LIVE_N);
        cr_assert_gt(atomic_load(&shim.n_zero_writes), 0, "the preparer never ran");
        wal_error_free(err);
        s2->ops->close(s2);
        w->ops->close(w);
        free(want);
        tf_teardown(&t);
}

Test(local_live, replay_beside_live_writer_auto, .timeout = 120)
{
        replay_beside_live_writer("auto", NULL, 0);
}
Test(local_live, replay_beside_live_writer_sync, .timeout = 120)
{
        replay_beside_live_writer("sync", NULL, 0);
}
Test(local_live, replay_beside_live_writer_uring, .timeout = 120)
{
        replay_beside_live_writer("uring", NULL, 0);
}
Test(local_live, replay_beside_live_writer_sync_two_lanes, .timeout = 120)
{
        replay_beside_live_writer("sync", "2", 0);
}

/*
 * The same with the preparer's zero writes slowed down (3 ms per piece of
 * 256 KiB): appends reach its claims while it writes, and must wait for
 * them (prep_blocks); a frame placed in a claim in progress would be
 * written before the zeros land on it, and read back as zeros.
 */
Test(local_live, slow_preparer_never_zeroes_a_frame_auto, .timeout = 120)
{
        replay_beside_live_writer("auto", NULL, 3000);
}
Test(local_live, slow_preparer_never_zeroes_a_frame_sync, .timeout = 120)
{
        replay_beside_live_writer("sync", NULL, 3000);
}
Test(local_live, slow_preparer_never_zeroes_a_frame_uring, .timeout = 120)
{
        replay_beside_live_writer("uring", NULL, 3000);
}
Test(local_live, slow_preparer_never_zeroes_a_frame_sync_two_lanes, .timeout = 120)
{
        replay_beside_live_writer("sync", "2", 3000);
}
