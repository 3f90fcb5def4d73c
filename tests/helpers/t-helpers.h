/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-helpers.h: small helpers shared by the test suites.
 *
 * Link `test_helpers_dep` (tests/helpers/meson.build) together with
 * `libwal_internal_dep`: the helper library compiles against libwal's
 * headers but does not bring libwal's objects itself, so a test never links
 * them twice.
 *
 * Every function returns 0 or a negative errno like the library does; none
 * calls a criterion assertion, so they are safe on any thread.
 */
#ifndef T_HELPERS_H
#define T_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal-config.h>

/* ---- Temporary directories ---- */

/**
 * Make a fresh directory "<$TMPDIR or /tmp>/<prefix>-XXXXXX".
 * @param prefix  borrowed; NULL means "libwal-test".
 * @param ret     the path (owned by the caller: free()), set on success only.
 * @returns 0, -errno of mkdtemp, -ENOMEM.
 */
int t_tmpdir_new(const char *prefix, char **ret);

/**
 * Remove @path and everything below it (does not follow symlinks).
 * @param path  borrowed.  A missing path is not an error.
 * @returns 0 or the first -errno met (removal continues past it).
 */
int t_rm_rf(const char *path);

/* ---- Network ---- */

/**
 * Find a TCP port that is free on 127.0.0.1 right now (bind to port 0, read
 * the port back, close).  Another process may still take it before use.
 * @returns the port (1..65535) or a negative errno.
 */
int t_free_port(void);

/* ---- Time ---- */

/** @returns CLOCK_MONOTONIC in milliseconds. */
uint64_t t_now_ms(void);
/** Sleep @ms milliseconds (restarted on EINTR). */
void t_sleep_ms(unsigned ms);

/* ---- Names ---- */

/**
 * Write "<prefix>_<8 random lowercase letters>" into @buf: unique channel
 * names let suites run against persistent backends.
 * @param prefix  borrowed; must be a valid channel name start.
 * @param buf     output (borrowed), @len bytes.
 * @returns 0, -ENOSPC if @buf is too small.
 */
int t_unique_name(const char *prefix, char *buf, size_t len);

/* ---- Backend fixtures (tests/helpers/t-backends.c) ---- */

/*
 * How to get a backend ready for a test: @setup fills a configuration
 * (starting servers, making directories) and returns private state that
 * @teardown releases.  Either may be NULL (nothing to do).
 */
struct t_backend_fixture {
        const char *name;                                   /* registry name */
        int (*setup)(wal_config *cfg, void **state);        /* 0 or -errno */
        void (*teardown)(void *state);                      /* state may be NULL */
};

/** @returns the fixture row for @name (borrowed, static), or NULL. */
const struct t_backend_fixture *t_backend_fixture_find(const char *name);
/** @returns the number of rows; t_backend_fixture_at(i) the i-th (NULL past the end). */
size_t t_backend_fixture_count(void);
const struct t_backend_fixture *t_backend_fixture_at(size_t i);

#endif /* T_HELPERS_H */
