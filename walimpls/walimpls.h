/* SPDX-License-Identifier: MIT */
/*
 * walimpls/walimpls.h: the backend interface (SPI).
 *
 * A backend is four objects, each living strictly inside the one before:
 *
 *   builder  static descriptor, one per backend name, registered with
 *            WAL_REGISTER_BACKEND() or wal_registry_add() (wal/wal-registry.h)
 *   opener   built from a configuration; owns the backend client (a data
 *            directory, a Redis connection pool, a Kafka producer)
 *   wal      one channel at one term, read-only or read-write
 *   scanner  one reader of one wal
 *
 * Only the adaptor calls these methods.  It guarantees the ordering rules in
 * the table below, so a backend need not defend against them: a wal is
 * closed only after every scanner it made, an opener only after every wal;
 * close never runs concurrently with another method of the same object.
 *
 * The backend sees raw messages in ID order: no time ticks are assigned, no
 * filtering, no transactions.  Those are the adaptor's.  What a backend must
 * persist for each message is everything wal_msg carries (payload, type,
 * properties, vchannel, time tick, term, last-confirmed ID, transaction
 * fields); utility/envelope.h encodes all but the payload in one buffer.
 *
 * Versioning: every ops table begins with `version`.  New methods are only
 * ever appended, and WALIMPLS_VERSION bumps when they are.  The adaptor calls
 * a method only if the table's version is high enough and the pointer is
 * non-NULL; an optional method left NULL reads as -EOPNOTSUPP.
 *
 * Errors: negative errno values (see wal/wal-error.h), with an optional
 * wal_error.  -ESTALE means fenced (a newer term owns the channel) and is
 * permanent for that wal.  Mark errors worth retrying WAL_ERROR_RETRIABLE.
 *
 * Method table (who calls, whether it may block, what may run concurrently
 * on the SAME object):
 *
 *   method             may block   concurrent with
 *   builder.build      yes         other builds
 *   opener.open        yes         open (other channels), list_channels
 *   opener.list_channels yes       open, list_channels
 *   opener.close       yes         nothing
 *   wal.append         briefly     append, read, truncate, info
 *                      (back-pressure only, never waits for durability)
 *   wal.append_take    as append   as append
 *   wal.read           yes         append, read, truncate, info
 *   wal.truncate       yes         append, read, info
 *   wal.info           yes         append, read, truncate, info
 *   wal.flush          yes         append, read, truncate, info, flush
 *   wal.close          yes         nothing
 *   scanner.next       up to its timeout   scanner.interrupt, scanner.fd
 *   scanner.next_batch up to its timeout   scanner.interrupt, scanner.fd
 *   scanner.interrupt  no          anything (may be called from any thread)
 *   scanner.fd         no          anything
 *   scanner.close      yes         nothing
 */
#ifndef WALIMPLS_H
#define WALIMPLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal-common.h>
#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-message.h>
#include <wal/wal-msgid.h>
#include <wal/wal-types.h>

WAL_BEGIN_DECLS

/* 1: the first interface; 2: scanner.next_batch; 3: wal.flush;
 * 4: wal.append_take. */
#define WALIMPLS_VERSION 4

struct walimpls_builder;
struct walimpls_opener;
struct walimpls_wal;
struct walimpls_scanner;

/* Capability bits of a builder. */
enum {
        WALIMPLS_CAP_PERSISTENT = 1u << 0, /* data outlives the process */
        WALIMPLS_CAP_TRUNCATE   = 1u << 1, /* truncate deletes data */
        WALIMPLS_CAP_FENCING    = 1u << 2, /* an older term's appends fail with -ESTALE */
        WALIMPLS_CAP_LIST       = 1u << 3, /* opener.list_channels works */
};

/* ---- Builder ---- */

/*
 * Build an opener from @cfg (borrowed: copy what you keep).  Connect or open
 * what the opener owns.  On success store it in *ret (owned by the adaptor,
 * released through opener.close) and return 0.
 * Errors: -EINVAL a property value the backend cannot use; -ECONNREFUSED,
 * -EHOSTUNREACH, -ETIMEDOUT server unreachable; -EACCES permission.
 */
typedef int walimpls_build_fn(const wal_config *cfg, struct walimpls_opener **ret,
                              wal_error **reterr);

struct walimpls_builder {
        uint32_t version;                       /* WALIMPLS_VERSION */
        const char *name;                       /* lowercase, [a-z0-9_-]+ */
        const char *description;                /* one line for `walctl backends` */
        uint32_t caps;                          /* WALIMPLS_CAP_* */
        const struct wal_property *properties;  /* own properties, "<name>." keys;
                                                   NULL-name-terminated; may be NULL */
        walimpls_build_fn *build;
};

/* ---- Opener ---- */

struct walimpls_open_opts {
        const char *channel;     /* non-empty; validated by the adaptor (see
                                    walimpls_channel_name_valid()) */
        int64_t term;            /* >= 0; RW opens fence every lower term */
        enum wal_access access;
};

/*
 * Open one channel.  Read-write: create the channel if missing, record
 * @opts->term as its owner and fence every writer of a lower term; return
 * -ESTALE if a higher term already owns it.  Read-only: -ENOENT if the
 * channel does not exist.  *ret is owned by the adaptor until wal.close.
 */
typedef int walimpls_open_fn(struct walimpls_opener *o,
                             const struct walimpls_open_opts *opts,
                             struct walimpls_wal **ret, wal_error **reterr);

/* Called once per channel name, in no particular order; non-zero stops. */
typedef int walimpls_channel_fn(void *arg, const char *channel);

/* Optional.  List the channels that exist.  Returns 0, the callback's
 * non-zero value, or a negative error. */
typedef int walimpls_list_channels_fn(struct walimpls_opener *o,
                                      walimpls_channel_fn *fn, void *arg,
                                      wal_error **reterr);

/* Release the opener and everything it owns.  Every wal is already closed. */
typedef void walimpls_opener_close_fn(struct walimpls_opener *o);

struct walimpls_opener_ops {
        uint32_t version;
        walimpls_open_fn *open;
        walimpls_list_channels_fn *list_channels;   /* optional */
        walimpls_opener_close_fn *close;
};

/* Base of every backend opener: embed it first. */
struct walimpls_opener {
        const struct walimpls_opener_ops *ops;
        const struct walimpls_builder *builder;
};

/* ---- WAL ---- */

/*
 * Completion of an append.  Runs exactly once for every append that returned
 * 0, on any thread (possibly inside append itself, before it returns).
 * @status  0 when durable at the backend's durability level, else a negative
 *          errno: -ECANCELED (closed while in flight), -ESTALE (fenced), ...
 * @id      the message's ID when @status is 0, else WAL_MSGID_NONE.
 * @err     optional detail, borrowed for the duration of the call.
 * Must not block and must not call back into the same wal's close.
 */
typedef void walimpls_append_done_fn(void *arg, int status, struct wal_msgid id,
                                     const wal_error *err);

/*
 * Queue @msg for appending.  @msg is borrowed: take a reference
 * (wal_msg_ref) to keep it past the return; never modify it.
 * Ordering: IDs are assigned in the order append() calls returned 0 on this
 * wal, so a caller that serialises its calls gets strictly increasing IDs in
 * call order (the adaptor relies on this to keep time ticks and IDs in the
 * same order).  Completions may run in any order.
 * Returns 0 if queued (@done will run exactly once) or a negative errno if
 * refused (@done never runs): -EROFS read-only, -ESTALE fenced, -EMSGSIZE,
 * -EIO the wal is unavailable after an earlier I/O error.
 */
typedef int walimpls_append_fn(struct walimpls_wal *w, wal_msg *msg,
                               walimpls_append_done_fn *done, void *arg);

/*
 * Optional (interface version 4).  As append, but the backend keeps @msg
 * itself as its record instead of a copy of it: for a backend that stores
 * message objects (memory), this saves the copy append would make.
 * @msg  mutable (not frozen), borrowed as for append (take a reference to
 *       keep it).  The caller hands over its final content: from the call
 *       on, nobody changes it, and the caller does not read its ID or
 *       whether it is immutable until this returns.
 * On 0 the backend has frozen @msg (wal_msg_freeze) with the ID it
 * assigned, before returning (so only a backend that knows the ID within
 * the call can offer this); @msg is then immutable, and its completion
 * reports that same ID when it succeeds.  On a negative return (the errors
 * of append) @msg is neither frozen nor kept, and @done never runs.
 * Everything else (ordering, completions, close) is as for append.  Call it
 * through walimpls_append_take(), which falls back to append for a backend
 * without it.
 */
typedef int walimpls_append_take_fn(struct walimpls_wal *w, wal_msg *msg,
                                    walimpls_append_done_fn *done, void *arg);

struct walimpls_read_opts {
        const char *name;            /* scanner name, for logs and metrics */
        struct wal_deliver deliver;  /* ALL, LATEST, START_FROM or START_AFTER */
        uint32_t read_ahead;         /* messages to prefetch; 0 = backend default */
};

/*
 * Make a scanner.  Start positions: ALL = the earliest retained message;
 * LATEST = the first message appended after read returns; START_FROM /
 * START_AFTER an ID (which need not exist: start at the first ID >= or > it).
 * An ID below the earliest retained message (truncated away) is -ERANGE,
 * here or at the first next(): never a silent skip.
 */
typedef int walimpls_read_fn(struct walimpls_wal *w,
                             const struct walimpls_read_opts *opts,
                             struct walimpls_scanner **ret, wal_error **reterr);

/*
 * Optional.  Allow deletion of everything up to and including @id.  Data
 * may be deleted later (whole segments) or never.  -EROFS on a read-only wal.
 */
typedef int walimpls_truncate_fn(struct walimpls_wal *w, struct wal_msgid id,
                                 wal_error **reterr);

struct walimpls_info {
        struct wal_msgid first_id;   /* earliest retained, NONE if empty/unknown */
        struct wal_msgid last_id;    /* latest written, NONE if empty/unknown */
        int64_t count;               /* retained messages, -1 unknown */
        int64_t bytes;               /* retained bytes, -1 unknown */
        int64_t term;                /* term recorded as owner, -1 unknown */
        const char *durability;      /* static text: what an acked append survives */
};

/* Optional.  Describe the channel. */
typedef int walimpls_info_fn(struct walimpls_wal *w, struct walimpls_info *ret,
                             wal_error **reterr);

/*
 * Optional (interface version 3).  Wait until every append that returned 0
 * on @w before this call has completed: its completion has run, with
 * success or with its error.  For a caller that has nothing else to do
 * until its own append is durable (a blocking append: queue with append,
 * then flush, outside any lock the caller holds while appending).  The
 * backend may do the work on the calling thread (write and sync the queued
 * records itself, and run their completions there) instead of handing it to
 * another thread and back; completions may therefore run inside flush.
 * Appends and flushes from other threads may run meanwhile; appends made
 * after the call began need not be covered.
 * @timeout_ms  -1: no limit; else give up waiting after about this long (a
 *              flush that is doing the I/O itself finishes that first).
 * Returns 0 when they have all completed (look at each completion's status
 * for the outcome), -ETIMEDOUT when the time ran out first.  Call it through
 * walimpls_flush(), which returns -EOPNOTSUPP for a backend without it.
 */
typedef int walimpls_flush_fn(struct walimpls_wal *w, int timeout_ms, wal_error **reterr);

/*
 * Close the wal.  Every scanner is closed already and no other method runs.
 * Before returning, run the completion of every append still in flight,
 * with its real outcome or -ECANCELED.  Frees the object.
 */
typedef void walimpls_wal_close_fn(struct walimpls_wal *w);

struct walimpls_wal_ops {
        uint32_t version;
        walimpls_append_fn *append;
        walimpls_read_fn *read;
        walimpls_truncate_fn *truncate;   /* optional */
        walimpls_info_fn *info;           /* optional */
        walimpls_wal_close_fn *close;
        walimpls_flush_fn *flush;         /* optional; version >= 3 */
        walimpls_append_take_fn *append_take; /* optional; version >= 4 */
};

/* Base of every backend wal: embed it first; fill it with walimpls_wal_init(). */
struct walimpls_wal {
        const struct walimpls_wal_ops *ops;
        struct walimpls_opener *opener;
        char *channel;                /* owned copy of the name */
        int64_t term;
        enum wal_access access;
};

/* ---- Scanner ---- */

/*
 * Deliver the next message, in strictly ascending ID order.
 * @timeout_ms  0: do not wait; -1: wait forever; else at most this long.
 * Returns 0 with *ret an immutable message (one reference, owned by the
 * caller); -ETIMEDOUT nothing arrived in time; -ECANCELED interrupted;
 * -ERANGE the position was truncated away; other negative errno: the scanner
 * failed and every later call returns the same.
 */
typedef int walimpls_next_fn(struct walimpls_scanner *s, int timeout_ms,
                             wal_msg **ret, wal_error **reterr);

/*
 * Optional (version >= 2).  Deliver up to @max (>= 1) next records at once
 * as views into the scanner's own read buffer (wal/wal-message.h), in
 * strictly ascending ID order, continuing from where next() or the last
 * next_batch() stopped (the two may be mixed freely).  For embedders that
 * replay a channel at startup: no message object, allocation or payload
 * copy per record.
 * @views   filled [0, *n) (borrowed array of @max entries).  Every view and
 *          everything it points to stays valid until the next call of
 *          next, next_batch or close on this scanner, and must not be
 *          written to.
 * Each record delivered passed the checks next() makes (its checksum, a
 * well-formed envelope); a record that fails them is not delivered: the
 * records before it are, and the call that reaches it fails as next()
 * would.  The batch may be shorter than @max for any reason (the end of a
 * read buffer or of a segment): *n >= 1 says nothing about what is left.
 * @timeout_ms  as for next(), for the first record only: the call never
 *          waits for more once it has one.
 * Returns 0 with *n >= 1; otherwise *n = 0 and the errors of next()
 * (-ETIMEDOUT, -ECANCELED, -ERANGE, a sticky failure); -EINVAL @max 0.
 * A NULL pointer reads as -EOPNOTSUPP: use next().
 */
typedef int walimpls_next_batch_fn(struct walimpls_scanner *s, int timeout_ms,
                                   struct wal_msg_view *views, size_t max, size_t *n,
                                   wal_error **reterr);

/* Make a next() blocked now or later return -ECANCELED promptly.  Sticky. */
typedef void walimpls_interrupt_fn(struct walimpls_scanner *s);

/*
 * A descriptor that polls readable when next(s, 0) may deliver.  It may be
 * readable spuriously, but after next(s, 0) returned -ETIMEDOUT it becomes
 * readable no later than the moment a message is available.  Owned by the
 * scanner; valid until close.
 */
typedef int walimpls_fd_fn(struct walimpls_scanner *s);

/* Release the scanner.  No next() is running. */
typedef void walimpls_scanner_close_fn(struct walimpls_scanner *s);

struct walimpls_scanner_ops {
        uint32_t version;
        walimpls_next_fn *next;
        walimpls_interrupt_fn *interrupt;
        walimpls_fd_fn *fd;
        walimpls_scanner_close_fn *close;
        walimpls_next_batch_fn *next_batch;   /* optional, version >= 2 */
};

/* Base of every backend scanner: embed it first. */
struct walimpls_scanner {
        const struct walimpls_scanner_ops *ops;
        struct walimpls_wal *wal;
        char *name;                   /* owned copy */
};

/* ---- Helpers for backend authors ---- */

/** Fill the base of a wal; copies @opts->channel.  0 or -ENOMEM. */
WAL_EXPORT int walimpls_wal_init(struct walimpls_wal *w, const struct walimpls_wal_ops *ops,
                                 struct walimpls_opener *o,
                                 const struct walimpls_open_opts *opts);
/** Release what walimpls_wal_init() allocated (not @p w itself). */
WAL_EXPORT void walimpls_wal_done(struct walimpls_wal *w);

/**
 * wal.flush when @p w has it (its ops table has version >= 3 and a non-NULL
 * flush), else -EOPNOTSUPP without waiting.
 */
WAL_EXPORT int walimpls_flush(struct walimpls_wal *w, int timeout_ms, wal_error **reterr);

/*
 * Completion batches.  A backend thread about to run several completions in
 * a row (the replies of one pipeline, say) may bracket them with
 * walimpls_done_batch_begin() and walimpls_done_batch_end().  The caller of
 * the backend (the adaptor) may then put off the work it does after each
 * completion (publishing the durable prefix, handing outcomes to its
 * callback thread) until the bracket closes, and do it once for the whole
 * run.  Each completion still runs exactly once, inside the bracket;
 * walimpls_done_batch_end() runs what was put off, on the calling thread,
 * so call it with no lock held that a completion's work could need (as for
 * the completions themselves).  Brackets are per thread and nest.  A
 * backend that never brackets behaves as before.
 */
WAL_EXPORT void walimpls_done_batch_begin(void);
WAL_EXPORT void walimpls_done_batch_end(void);
/**
 * For the backend's caller, inside a completion: when the calling thread is
 * in a bracket, remember @p fn(@p arg) to run when it closes and return true;
 * otherwise return false (the caller runs it now).  One call is remembered
 * per thread: a different @p fn or @p arg runs the remembered one first, and
 * the same pair is remembered once.  @p arg is borrowed and must stay valid
 * until the bracket closes.
 */
WAL_EXPORT bool walimpls_done_defer(void (*fn)(void *arg), void *arg);

/**
 * wal.append_take when @p w has it (version >= 4, non-NULL), else wal.append
 * (which copies; @p msg is then left mutable).  Either way, after 0, read
 * the ID from the completion, not from @p msg.
 */
WAL_EXPORT int walimpls_append_take(struct walimpls_wal *w, wal_msg *msg,
                                    walimpls_append_done_fn *done, void *arg);

/** Whether @p w has wal.append_take (so walimpls_append_take() freezes). */
WAL_EXPORT bool walimpls_has_append_take(const struct walimpls_wal *w);

/** Fill the base of a scanner; copies @p name (NULL becomes ""). 0 or -ENOMEM. */
WAL_EXPORT int walimpls_scanner_init(struct walimpls_scanner *s,
                                     const struct walimpls_scanner_ops *ops,
                                     struct walimpls_wal *w, const char *name);
WAL_EXPORT void walimpls_scanner_done(struct walimpls_scanner *s);

/**
 * @returns true if @p name is a valid channel name: 1..200 bytes of
 *          [A-Za-z0-9._-], not starting with '.' or '-'.  Safe as a file
 *          name, a Redis key suffix and a Kafka topic suffix.
 */
WAL_EXPORT bool walimpls_channel_name_valid(const char *name);

/*
 * A wait/notify helper giving a scanner its blocking next() and its pollable
 * fd: an eventfd plus a mutex and condition variable.  The producer side
 * calls walimpls_notifier_signal() after making data visible; the scanner
 * waits with walimpls_notifier_wait() on a sequence number it read before
 * checking for data, so no wake-up is lost.
 */
struct walimpls_notifier {
        int efd;                 /* eventfd, EFD_NONBLOCK */
        uint64_t seq;            /* bumped by every signal */
        bool interrupted;        /* sticky */
        void *impl;              /* mutex + condvar, private */
};

WAL_EXPORT int walimpls_notifier_init(struct walimpls_notifier *n);
WAL_EXPORT void walimpls_notifier_done(struct walimpls_notifier *n);
/** The current sequence; read it before checking for data. */
WAL_EXPORT uint64_t walimpls_notifier_seq(struct walimpls_notifier *n);
/** Wake every waiter and make the fd readable. */
WAL_EXPORT void walimpls_notifier_signal(struct walimpls_notifier *n);
/** Interrupt (sticky): waiters return -ECANCELED. */
WAL_EXPORT void walimpls_notifier_interrupt(struct walimpls_notifier *n);
/**
 * Wait until the sequence moves past @p seen, an interrupt, or the timeout.
 * @returns 0 (moved), -ETIMEDOUT, -ECANCELED.  Drains the fd.
 */
WAL_EXPORT int walimpls_notifier_wait(struct walimpls_notifier *n, uint64_t seen,
                                      int timeout_ms);
/** Drain the eventfd (after next(0) found nothing). */
WAL_EXPORT void walimpls_notifier_drain(struct walimpls_notifier *n);

WAL_END_DECLS

#endif /* WALIMPLS_H */
