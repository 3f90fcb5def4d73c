/* SPDX-License-Identifier: MIT */
/*
 * tests/adaptor/t-flaky.h: the "flaky" test backend, memory with injected
 * append failures and delays (t-flaky.c).
 */
#ifndef T_FLAKY_H
#define T_FLAKY_H

#include <stdatomic.h>

#include <wal/wal.h>

enum {
        FLAKY_PASS,             /* everything goes to memory */
        FLAKY_PATTERN,          /* every 3rd append -EAGAIN, every 5th -ETIMEDOUT (retriable) */
        FLAKY_ALWAYS_TIMEOUT,   /* every append completes -ETIMEDOUT (retriable), unwritten */
        FLAKY_ALWAYS_EIO,       /* every append completes -EIO (fatal), unwritten */
        FLAKY_DELAY,            /* written and visible first, completed 200 us later */
        FLAKY_HOLD,             /* written; its completion held back (FLAKY_RELEASE) */
        FLAKY_RELEASE,          /* written; then a new thread runs every held completion
                                   and this append's own in one completion batch
                                   (walimpls_done_batch_begin/end), while the append
                                   waits in flaky_release_wait() (if set) to return */
};
extern atomic_int flaky_mode;
/* FLAKY_RELEASE: called by the appending thread inside the backend's append,
 * once the releasing thread started; the append returns when it returns. */
extern void (*flaky_release_wait)(void);

/* Register the backend (once) and build an opener with "key=value" settings;
 * asserts on failure (test thread only).  Close with wal_opener_close(). */
wal_opener *flaky_opener(const char *const *props);

#endif /* T_FLAKY_H */
