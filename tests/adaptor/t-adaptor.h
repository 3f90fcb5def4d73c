/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/t-adaptor.h: helpers for the adaptor suites.
 *
 * They run the public API (wal/wal.h) on the memory backend, or on the
 * backend named by WAL_TEST_BACKEND when set.  Like the shared t_ helpers
 * they return 0 or a negative errno and never assert, so threads may use
 * them.
 */
#ifndef T_ADAPTOR_H
#define T_ADAPTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal.h>

/* Opener on the test backend (WAL_TEST_BACKEND, default memory, prepared
 * by its fixture row in tests/helpers) with "key=value" settings
 * (NULL-terminated array, may be NULL).  @ret owned by the caller, who
 * releases it with ta_opener_close(). */
int ta_opener(const char *const *props, wal_opener **ret);
/* wal_opener_close() plus the fixture's teardown (a temporary directory, a
 * server).  NULL is fine. */
void ta_opener_close(wal_opener *o);
/* The backend under test. */
const char *ta_backend(void);

/* A data message carrying @text, with optional @vchannel (both copied). */
wal_msg *ta_msg(const char *text, const char *vchannel);

/* Append @text and wait; *ret_msg (optional) gets the written message. */
int ta_append(wal *w, const char *text, const char *vchannel, wal_msg **ret_msg);

/* The payload of @m as a NUL-terminated string (borrowed). */
const char *ta_text(const wal_msg *m);

/* Counts completions of asynchronous appends. */
struct ta_counter {
        atomic_int calls;
        atomic_int ok;
        atomic_int failed;
        atomic_int cancelled;
        atomic_int bad;           /* status 0 without a message, or the reverse */
};
void ta_count_done(void *arg, int status, const wal_msg *msg, const wal_error *err);

/* Wait until @c->calls reaches @n, at most @ms.  0 or -ETIMEDOUT. */
int ta_wait_calls(struct ta_counter *c, int n, int ms);

#endif /* T_ADAPTOR_H */
