/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/conformance.h: the harness of the backend conformance
 * suite.  The suite talks to a backend only through the SPI
 * (walimpls/walimpls.h): registry lookup, builder.build, opener.open, then
 * the wal and scanner methods.  The backend is named by the environment
 * variable WAL_TEST_BACKEND; its fixture row (tests/helpers/t-backends.c)
 * prepares the configuration.
 *
 * Helpers named conf_* never assert, so worker threads may use them; they
 * return 0 or a negative errno, and those taking `char *err` describe the
 * first failure there (CONF_ERRLEN bytes).
 */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <walimpls/walimpls.h>
#include <wal/wal-registry.h>

#include "t-helpers.h"

#define CONF_ERRLEN 512

struct conf {
        const char *backend;                  /* $WAL_TEST_BACKEND */
        const struct walimpls_builder *b;     /* registered builder */
        const struct t_backend_fixture *fx;   /* its fixture row */
        wal_config *cfg;                      /* filled by the fixture */
        void *state;                          /* fixture state */
        struct walimpls_opener *o;            /* built by conf_init */
};

extern struct conf conf;

/* TestSuite .init / .fini: look the backend up (failing loudly when it is
 * not registered), run its fixture, build the opener; and undo all that. */
void conf_init(void);
void conf_fini(void);

/* Record the first failure in @err (CONF_ERRLEN bytes) and return -1. */
int conf_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A unique channel name "<prefix>_<random>" in @buf (64 bytes). */
void conf_channel(const char *prefix, char buf[64]);

/* opener.open through the SPI; a wal_error is freed after being copied into
 * @err (may be NULL). */
int conf_open(struct walimpls_opener *o, const char *channel, int64_t term,
              enum wal_access access, struct walimpls_wal **ret, char *err);

/* A DATA message with payload text "<fmt...>" (without the NUL) and the
 * property "idx" = @idx.  Aborts the process on ENOMEM (tests only). */
wal_msg *conf_msg(long idx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The "idx" property of @m, or -1. */
long conf_msg_idx(const wal_msg *m);

/*
 * A completion record usable as the append callback's argument.  Heap
 * allocated so an append that never completes cannot scribble on a stack.
 */
struct conf_done {
        atomic_int calls;        /* times the completion ran */
        int status;
        struct wal_msgid id;
        void *lock;              /* mutex + condvar, private */
};

struct conf_done *conf_done_new(void);
void conf_done_free(struct conf_done *d);
/* The walimpls_append_done_fn to pass with a conf_done. */
void conf_done_cb(void *arg, int status, struct wal_msgid id, const wal_error *err);
/* Wait until @d has run; 0 or -ETIMEDOUT. */
int conf_done_wait(struct conf_done *d, int timeout_ms);

/*
 * Append @m (borrowed) and wait for its completion (at most 30 s).
 * @returns append's refusal, the completion's status, or -ETIMEDOUT; the ID
 *          is stored in @ret_id (may be NULL) on success.
 */
int conf_append_sync(struct walimpls_wal *w, wal_msg *m, struct wal_msgid *ret_id);

/* wal.read through the SPI with the given policy and ID. */
int conf_read(struct walimpls_wal *w, const char *name, enum wal_deliver_policy policy,
              struct wal_msgid id, struct walimpls_scanner **ret, char *err);

/* scanner.next; a wal_error is copied into @err (may be NULL) and freed. */
int conf_next(struct walimpls_scanner *s, int timeout_ms, wal_msg **ret, char *err);

/* Format an ID for messages (static per-thread buffer ring of 4). */
const char *conf_id(struct wal_msgid id);

#endif /* CONFORMANCE_H */
