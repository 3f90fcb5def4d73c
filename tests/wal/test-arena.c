/* SPDX-License-Identifier: MIT */
/*
 * tests/wal/test-arena.c: message arenas (wal/message-internal.h,
 * wal/message.c): an arena copy holds what wal_msg_copy() would, stays
 * changeable until frozen, outlives its arena, and every chunk is unmapped
 * once its arena and its last message are gone, whichever thread lets go.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-message.h>

#include "wal/message-internal.h"

static wal_msg *new_msg(const char *payload)
{
        wal_msg *m = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, payload, strlen(payload), &m), 0);
        return m;
}

Test(arena, copy_holds_everything_and_stays_changeable)
{
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        wal_msg *m = new_msg("payload bytes");
        cr_assert_eq(wal_msg_set_prop(m, "k1", "v1"), 0);
        cr_assert_eq(wal_msg_set_prop(m, "key-two", "value two"), 0);
        cr_assert_eq(wal_msg_set_vchannel(m, "vch-7"), 0);
        cr_assert_eq(wal_msg_set_time_tick(m, 42), 0);
        cr_assert_eq(wal_msg_set_term(m, 3), 0);
        cr_assert_eq(wal_msg_set_last_confirmed(m, WAL_MSGID(0, 9)), 0);
        cr_assert_eq(wal_msg_set_txn(m, 77, 500), 0);

        wal_msg *c = NULL;
        cr_assert_eq(wal_msg_copy_in(a, m, &c), 0);
        cr_assert_eq(wal_msg_arena_chunks_mapped(), before + 1, "the copy was carved");
        size_t len = 0;
        const char *p = wal_msg_payload(c, &len);
        cr_expect_eq(len, 13u);
        cr_expect_eq(memcmp(p, "payload bytes", 13), 0);
        cr_expect_eq(p[len], '\0');
        cr_expect_eq(wal_msg_prop_count(c), 2u);
        cr_expect_str_eq(wal_msg_prop(c, "k1"), "v1");
        cr_expect_str_eq(wal_msg_prop(c, "key-two"), "value two");
        cr_expect_str_eq(wal_msg_vchannel(c), "vch-7");
        cr_expect_eq(wal_msg_size(c), wal_msg_size(m));
        cr_expect_eq(wal_msg_time_tick(c), 42u);
        cr_expect_eq(wal_msg_term(c), 3);
        cr_expect(wal_msgid_eq(wal_msg_last_confirmed(c), WAL_MSGID(0, 9)));
        cr_expect_eq(wal_msg_txn_id(c), 77u);
        cr_expect_eq(wal_msg_txn_keepalive_ms(c), 500u);
        cr_expect_not(wal_msg_is_immutable(c));
        cr_expect(wal_msgid_is_none(wal_msg_id(c)));

        /* Changes to the copy (its strings move out of the carve) leave
         * the original alone. */
        cr_expect_eq(wal_msg_set_prop(c, "k1", "changed"), 0);
        cr_expect_eq(wal_msg_set_prop(c, "k3", "new"), 0);
        cr_expect_eq(wal_msg_del_prop(c, "key-two"), 0);
        cr_expect_eq(wal_msg_set_vchannel(c, "other"), 0);
        cr_expect_str_eq(wal_msg_prop(c, "k1"), "changed");
        cr_expect_str_eq(wal_msg_prop(c, "k3"), "new");
        cr_expect_null(wal_msg_prop(c, "key-two"));
        cr_expect_str_eq(wal_msg_vchannel(c), "other");
        cr_expect_str_eq(wal_msg_prop(m, "k1"), "v1");
        cr_expect_str_eq(wal_msg_prop(m, "key-two"), "value two");
        cr_expect_str_eq(wal_msg_vchannel(m), "vch-7");

        /* A second copy: vchannel cleared before any property changes. */
        wal_msg *d = NULL;
        cr_assert_eq(wal_msg_copy_in(a, m, &d), 0);
        cr_expect_eq(wal_msg_set_vchannel(d, NULL), 0);
        cr_expect_null(wal_msg_vchannel(d));
        cr_expect_str_eq(wal_msg_prop(d, "key-two"), "value two");
        cr_expect_eq(wal_msg_freeze(d, WAL_MSGID(0, 5)), 0);
        cr_expect_eq(wal_msg_set_prop(d, "x", "y"), -EPERM);

        cr_expect_eq(wal_msg_freeze(c, WAL_MSGID(0, 4)), 0);
        cr_expect_eq(wal_msg_set_time_tick(c, 1), -EPERM);
        wal_msg_unref(m);
        wal_msg_unref(c);
        wal_msg_unref(d);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 1, "the arena still holds its chunk");
        wal_msg_arena_free(a);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
}

Test(arena, messages_outlive_the_arena_and_chunks_go_with_the_last)
{
        enum { N = 6000 };
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        wal_msg **v = calloc(N, sizeof(*v));
        cr_assert_not_null(v);
        char buf[128];
        for (int i = 0; i < N; i++) {
                snprintf(buf, sizeof(buf), "record %06d %0100d", i, i);
                wal_msg *m = new_msg(buf);
                cr_assert_eq(wal_msg_copy_in(a, m, &v[i]), 0);
                wal_msg_unref(m);
        }
        /* 6000 copies of ~300 bytes do not fit in the 64 KiB first chunk. */
        size_t mapped = wal_msg_arena_chunks_mapped() - before;
        cr_expect_gt(mapped, 2u, "chunks in use: %zu", mapped);
        wal_msg_arena_free(a);
        cr_expect_eq(wal_msg_arena_chunks_mapped() - before, mapped,
                     "chunks stay while their messages live");
        for (int i = 0; i < N; i++) {
                snprintf(buf, sizeof(buf), "record %06d %0100d", i, i);
                size_t len = 0;
                const char *p = wal_msg_payload(v[i], &len);
                cr_assert_eq(len, strlen(buf));
                cr_assert_eq(memcmp(p, buf, len), 0, "record %d", i);
        }
        /* Releasing every other message frees nothing; the rest frees all. */
        for (int i = 0; i < N; i += 2)
                wal_msg_unref(v[i]);
        cr_expect_eq(wal_msg_arena_chunks_mapped() - before, mapped);
        for (int i = 1; i < N; i += 2)
                wal_msg_unref(v[i]);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
        free(v);
}

Test(arena, large_messages_and_units_get_plain_copies)
{
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        size_t big = (size_t)1 << 20;
        char *payload = malloc(big);
        cr_assert_not_null(payload);
        memset(payload, 'x', big);
        wal_msg *m = NULL, *c = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, payload, big, &m), 0);
        cr_assert_eq(wal_msg_copy_in(a, m, &c), 0);
        size_t len = 0;
        cr_expect_eq(memcmp(wal_msg_payload(c, &len), payload, big), 0);
        cr_expect_eq(len, big);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before, "1 MiB is not carved");
        wal_msg_unref(c);

        wal_msg *unit = NULL, *u = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_TXN, NULL, 0, &unit), 0);
        wal_msg *body = new_msg("body");
        cr_assert_eq(wal_msg_txn_add_body(unit, body), 0);
        cr_assert_eq(wal_msg_copy_in(a, unit, &u), 0);
        cr_expect_eq(wal_msg_txn_body_count(u), 1u);
        cr_expect_eq(wal_msg_txn_body_at(u, 0), body);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before, "a unit is not carved");
        /* NULL arena: a plain copy. */
        wal_msg *p2 = NULL;
        cr_assert_eq(wal_msg_copy_in(NULL, body, &p2), 0);
        cr_expect_eq(wal_msg_copy_in(a, NULL, &p2), -EINVAL);
        cr_expect_eq(wal_msg_copy_in(a, body, NULL), -EINVAL);
        cr_expect_eq(wal_msg_arena_new(NULL), -EINVAL);
        wal_msg_unref(p2);
        wal_msg_unref(u);
        wal_msg_unref(unit);
        wal_msg_unref(body);
        wal_msg_unref(m);
        free(payload);
        wal_msg_arena_free(a);
        wal_msg_arena_free(NULL);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
}

/* Four threads copy into one arena at once; the messages are released by
 * other threads, in another order, after the arena is gone. */
enum { THREADS = 4, PER_THREAD = 20000 };

struct copier {
        struct wal_msg_arena *a;
        int id;
        wal_msg **out;
};

static void *copy_main(void *arg)
{
        struct copier *c = arg;
        char buf[64];
        for (int i = 0; i < PER_THREAD; i++) {
                snprintf(buf, sizeof(buf), "t%d-%d", c->id, i);
                wal_msg *m = NULL;
                if (wal_msg_new(WAL_MSG_DATA, buf, strlen(buf), &m) < 0 ||
                    wal_msg_copy_in(c->a, m, &c->out[i]) < 0)
                        return (void *)1;
                wal_msg_unref(m);
        }
        return NULL;
}

static void *release_main(void *arg)
{
        struct copier *c = arg;
        for (int i = PER_THREAD; i-- > 0;)
                wal_msg_unref(c->out[i]);
        return NULL;
}

Test(arena, concurrent_copies_and_releases_on_other_threads)
{
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        struct copier c[THREADS];
        pthread_t th[THREADS];
        for (int t = 0; t < THREADS; t++) {
                c[t] = (struct copier){ a, t, calloc(PER_THREAD, sizeof(wal_msg *)) };
                cr_assert_not_null(c[t].out);
                cr_assert_eq(pthread_create(&th[t], NULL, copy_main, &c[t]), 0);
        }
        for (int t = 0; t < THREADS; t++) {
                void *ret;
                pthread_join(th[t], &ret);
                cr_assert_null(ret, "thread %d failed to copy", t);
        }
        wal_msg_arena_free(a);
        char buf[64];
        for (int t = 0; t < THREADS; t++)
                for (int i = 0; i < PER_THREAD; i++) {
                        snprintf(buf, sizeof(buf), "t%d-%d", t, i);
                        size_t len = 0;
                        const char *p = wal_msg_payload(c[t].out[i], &len);
                        cr_assert(len == strlen(buf) && memcmp(p, buf, len) == 0,
                                  "thread %d record %d", t, i);
                }
        /* Each thread releases another's messages. */
        for (int t = 0; t < THREADS; t++)
                cr_assert_eq(pthread_create(&th[t], NULL, release_main, &c[(t + 1) % THREADS]), 0);
        for (int t = 0; t < THREADS; t++)
                pthread_join(th[t], NULL);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
        for (int t = 0; t < THREADS; t++)
                free(c[t].out);
}

/* The next chunk made ahead: asked for once the current one is past half,
 * made by wal_msg_arena_fill_spare(), and taken by the copy that finds
 * the current chunk full instead of mapping another. */
Test(arena, spare_chunk_is_asked_for_made_ahead_and_used)
{
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        cr_expect_not(wal_msg_arena_wants_spare(a));
        cr_expect_not(wal_msg_arena_wants_spare(NULL));
        wal_msg_arena_fill_spare(a); /* not wanted: nothing made */
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
        char buf[200];
        memset(buf, 'p', sizeof(buf) - 1);
        buf[sizeof(buf) - 1] = '\0';
        wal_msg *m = new_msg(buf);
        enum { MAX = 2000 };
        wal_msg *v[MAX];
        int n = 0;
        while (n < MAX && !wal_msg_arena_wants_spare(a))
                cr_assert_eq(wal_msg_copy_in(a, m, &v[n++]), 0);
        cr_assert(wal_msg_arena_wants_spare(a), "asked for a spare after %d copies", n);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 1);
        int half = n;
        wal_msg_arena_fill_spare(a);
        cr_expect_not(wal_msg_arena_wants_spare(a));
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 2, "the spare is mapped");
        /* Past the first chunk's end: the spare becomes the current chunk. */
        while (n < 4 * half + 10) /* the second chunk is twice the first */
                cr_assert_eq(wal_msg_copy_in(a, m, &v[n++]), 0);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 2,
                     "the copy that filled the first chunk took the spare");
        cr_expect(wal_msg_arena_wants_spare(a), "and the next spare is asked for");
        wal_msg_arena_fill_spare(a);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 3);
        /* An unused spare goes with the arena; the rest with their messages. */
        wal_msg_arena_free(a);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before + 2);
        for (int i = 0; i < n; i++)
                wal_msg_unref(v[i]);
        wal_msg_unref(m);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
}

/* A spare made for the arena's next chunk but too small for the chunk a
 * large copy needs is not left in place for ever: the arena asks for a
 * spare again once its next chunk is past half, so the chunks after a large
 * message are still made ahead (with the unusable spare kept, want_spare
 * was never raised again and every later chunk was mapped by a copy). */
Test(arena, a_spare_too_small_for_a_large_copy_does_not_stop_spares)
{
        size_t before = wal_msg_arena_chunks_mapped();
        struct wal_msg_arena *a = NULL;
        cr_assert_eq(wal_msg_arena_new(&a), 0);
        char buf[200];
        memset(buf, 'p', sizeof(buf) - 1);
        buf[sizeof(buf) - 1] = '\0';
        wal_msg *m = new_msg(buf);
        enum { MAX = 20000 };
        static wal_msg *v[MAX];
        int n = 0;
        while (n < MAX && !wal_msg_arena_wants_spare(a))
                cr_assert_eq(wal_msg_copy_in(a, m, &v[n++]), 0);
        wal_msg_arena_fill_spare(a);        /* a spare of the next size */
        /* A copy of about 100 KiB needs a chunk larger than that spare. */
        static char big[100 << 10];
        memset(big, 'b', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        wal_msg *bm = new_msg(big);
        cr_assert_eq(wal_msg_copy_in(a, bm, &v[n++]), 0);
        /* Small copies again, up to a few chunks further on: the arena must
         * ask for a spare again at some point. */
        bool asked = false;
        while (n < MAX && !asked) {
                cr_assert_eq(wal_msg_copy_in(a, m, &v[n++]), 0);
                asked = wal_msg_arena_wants_spare(a);
        }
        cr_assert(asked, "after a copy larger than its spare, the arena never asked for a "
                  "spare again (%d copies)", n);
        wal_msg_arena_free(a);
        for (int i = 0; i < n; i++)
                wal_msg_unref(v[i]);
        wal_msg_unref(m);
        wal_msg_unref(bm);
        cr_expect_eq(wal_msg_arena_chunks_mapped(), before);
}

#if defined(__SANITIZE_ADDRESS__)
#include <signal.h>

/* Under AddressSanitizer an arena copy is as guarded as a malloc()ed one:
 * ASan aborts the process (ASAN_OPTIONS=abort_on_error=1, set by the test
 * runner) on a write past the carve or a read after the last unref.  Each
 * case keeps the arena alive, so the chunk stays mapped and the fault is
 * ASan's report, not a SIGSEGV.  These cases exist only in ASan builds. */
static wal_msg *carved_copy(struct wal_msg_arena **a)
{
        cr_assert_eq(wal_msg_arena_new(a), 0);
        wal_msg *m = new_msg("twelve bytes");
        wal_msg *c = NULL;
        size_t before = wal_msg_arena_chunks_mapped();
        cr_assert_eq(wal_msg_copy_in(*a, m, &c), 0);
        cr_assert_eq(wal_msg_arena_chunks_mapped(), before + 1, "the copy was carved");
        wal_msg_unref(m);
        return c;
}

Test(arena, asan_reports_a_write_past_a_carved_message, .signal = SIGABRT)
{
        struct wal_msg_arena *a = NULL;
        wal_msg *c = carved_copy(&a);
        size_t len = 0;
        volatile char *p = (volatile char *)wal_msg_payload(c, &len);
        /* The carve ends within 16 bytes after the payload's NUL; this byte
         * is in the redzone after it. */
        p[len + 16] = 'x';
        cr_assert_fail("a write past the carve was not reported");
}

Test(arena, asan_reports_a_read_after_the_last_unref, .signal = SIGABRT)
{
        struct wal_msg_arena *a = NULL;
        wal_msg *c = carved_copy(&a);
        size_t len = 0;
        volatile const char *p = wal_msg_payload(c, &len);
        wal_msg_unref(c);
        char ch = p[0];
        (void)ch;
        cr_assert_fail("a read after the last unref was not reported");
}
#endif
