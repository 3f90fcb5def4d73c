/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-api.h: handles and operations of the public WAL API.
 *
 * Three handles, each living strictly inside the one before:
 *
 *   wal_opener   built from a backend name and a configuration; owns the
 *                backend client (data directory, connection pool, producer)
 *   wal          one channel at one term, read-only or read-write
 *   wal_scanner  one reader of one wal
 *
 * plus wal_txn, an open transaction on a read-write wal.
 *
 * Lifetime.  Every handle is closed by whoever created it, with its own
 * close function, exactly once.  Closing a parent first closes every child
 * still open: new calls on the child are refused with -ESHUTDOWN, appends in
 * flight finish (or complete with -ECANCELED), a thread blocked in
 * wal_scanner_next() returns -ESHUTDOWN promptly, and then the backend object
 * is released.  The child's memory stays valid until its owner calls the
 * child's close function, which then only releases it.  No call hangs after
 * close.
 *
 * Callbacks.  An append callback runs exactly once if the call that
 * registered it returned 0, and never if it returned a negative errno.
 * Callbacks run on the wal's own completion thread (never on a backend
 * thread, nor inside wal_append()), in the order the messages were written
 * (ID order) except for appends that had to be retried; they must not block
 * (in particular they must not call wal_append_wait(), wal_txn_begin(),
 * wal_txn_commit(), wal_txn_rollback() or any close function), but they may
 * call wal_append(), wal_txn_append() and wal_txn_commit_async().
 * wal_append_wait() and wal_txn_begin() called there return -EDEADLK rather
 * than wait for a completion that cannot run before the callback returns;
 * wal_txn_commit() there returns -EDEADLK and rolls the transaction back,
 * and wal_txn_rollback() there rolls back without waiting (see below).
 * A program that needs acknowledgements in submission order (walctl append
 * -J) reorders them itself.
 *
 * Retries.  An append that fails with a retriable error (lost connection,
 * back-pressure, timeout) is redone after a backoff (retry.* properties)
 * with a fresh time tick, so it is written after appends that followed it;
 * an ambiguous failure (written, but the acknowledgement lost) can thus
 * appear twice in the log.  Fenced (-ESTALE), closed and fatal errors are
 * never retried.
 *
 * Ordering.  Within one wal, time ticks and message IDs are assigned in the
 * same order, and scanners deliver in that order.
 *
 * Thread safety: every function here is thread-safe unless its comment says
 * otherwise.  A scanner is read by one thread at a time; any thread may
 * close it.
 */
#ifndef WAL_API_H
#define WAL_API_H

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

typedef struct wal_opener wal_opener;
typedef struct wal wal;
typedef struct wal_scanner wal_scanner;
typedef struct wal_txn wal_txn;

/* ---- Interceptors ----
 *
 * An interceptor sees every append of a wal before it reaches the backend.
 * Chains run outermost first: the opener's interceptors (in the order they
 * were added), then those given to wal_open_ex(), then the built-ins
 * "retry", "validate", "timetick", "metrics".  Names are unique within a
 * chain (-EEXIST otherwise, also for a built-in's name); names starting with
 * "wal." are reserved (-EINVAL).
 */

/* The rest of the chain below an interceptor (opaque, valid during do_append). */
typedef struct wal_append_next wal_append_next;

/** What an append came to, handed to an interceptor's done hook. */
struct wal_append_result {
        int status;              /* 0 or a negative errno */
        const wal_msg *msg;      /* the immutable message when status is 0, else NULL */
        const wal_error *err;    /* optional detail, may be NULL */
        uint64_t latency_ns;     /* from wal_append() to completion; outcomes
                                    reported together share one clock
                                    reading (up to 32, read when the
                                    first of them is reported) */
        unsigned attempts;       /* backend appends tried (retries + 1) */
};

struct wal_interceptor {
        const char *name;        /* unique in the chain; copied at registration */
        void *arg;               /* passed to every hook (borrowed) */

        /*
         * Required.  Inspect or change @msg (mutable, owned by libwal) and pass
         * it on with wal_append_next_call(); return its result, or a negative
         * errno to refuse the append (wal_append() then returns that value and
         * its callback never runs).  Runs on the appending thread and must not
         * block for long.
         */
        int (*do_append)(void *arg, wal *w, wal_msg *msg, wal_append_next *next);

        /* Optional.  Called once when an append that passed this interceptor
         * completes, before the user's callback; must not block.  Hooks run
         * one at a time, in the order callbacks do, on the wal's completion
         * thread, except that those of a wal_append_wait() append may run on
         * the thread waiting in it (never inside wal_append()). */
        void (*done)(void *arg, wal *w, const struct wal_append_result *res);

        /* Optional.  Called once when the wal is open, before its first
         * append, in chain order; a negative return fails wal_open() with
         * that code (the ready hooks after it are not called). */
        int (*ready)(void *arg, wal *w);

        /* Optional.  Called once when the wal closes, after the last done.
         * For a wal whose open failed, called only if this interceptor's
         * ready hook ran and returned 0 (a later one failed the open), so
         * that what ready set up is released; then no append ran.  So
         * close pairs with an open that succeeded or a ready that did: an
         * interceptor without a ready hook, which cannot have set anything
         * up for a wal before its first append, gets no close for a wal
         * whose open failed. */
        void (*close)(void *arg, wal *w);
};

/**
 * @brief Pass @p msg on to the next interceptor (or to the backend).
 * @param next  the handle given to do_append (borrowed).
 * @param msg   the message (borrowed).
 * @returns 0 if the append is under way (its completion will follow, and may
 *          already have run: @p msg stays readable until do_append returns,
 *          but must not be changed any more, since it may already be the
 *          immutable message readers see), or the negative errno with which
 *          something below refused it.
 */
WAL_EXPORT int wal_append_next_call(wal_append_next *next, wal_msg *msg);

/* ---- Opener ---- */

/**
 * @brief Build an opener for a backend.
 * @param backend  backend name (borrowed); NULL means the config's "backend"
 *                 property.
 * @param cfg      configuration (copied; the caller keeps it); NULL means
 *                 every default.
 * @param ret      the opener, set only on success (owned by the caller, who
 *                 releases it with wal_opener_close()).
 * @param reterr   optional error detail.
 * @returns 0; -EINVAL NULL @p ret or a property the backend cannot use;
 *          -ENOENT unknown backend (the error lists the known ones);
 *          -ECONNREFUSED/-ETIMEDOUT/-EHOSTUNREACH server unreachable;
 *          -ENOMEM.
 * @remark Thread-safe.  May block while the backend connects.
 */
WAL_EXPORT int wal_opener_new(const char *backend, const wal_config *cfg,
                              wal_opener **ret, wal_error **reterr);

/**
 * @brief Add an interceptor to every wal this opener opens from now on.
 * @param ic  descriptor (copied; @p ic->arg stays borrowed and must outlive
 *            the opener).
 * @returns 0; -EINVAL (NULL, no name, no do_append, reserved name);
 *          -EEXIST a name already in the chain or a built-in's;
 *          -ESHUTDOWN opener closed.
 */
WAL_EXPORT int wal_opener_add_interceptor(wal_opener *o, const struct wal_interceptor *ic,
                                          wal_error **reterr);

/** @returns the backend name (static), or NULL for NULL @p o. */
WAL_EXPORT const char *wal_opener_backend(const wal_opener *o);

/* Called once per channel; non-zero stops the listing and is returned. */
typedef int wal_channel_fn(void *arg, const char *channel);

/**
 * @brief List the channels the backend holds.
 * @param fn   called once per channel, name borrowed for the call.
 * @returns 0, @p fn's non-zero value, -EOPNOTSUPP the backend cannot list,
 *          -ESHUTDOWN, -EINVAL, or a backend error.
 * @remark Thread-safe; may block.
 */
WAL_EXPORT int wal_opener_list_channels(wal_opener *o, wal_channel_fn *fn, void *arg,
                                        wal_error **reterr);

/**
 * @brief Statistics of every open wal, as one JSON object:
 *        {"v":1,"backend":"memory","wals":[<wal_stats_json objects>]}.
 * @param ret  NUL-terminated text (owned by the caller, free()).
 * @returns 0, -EINVAL, -ESHUTDOWN, -ENOMEM.
 */
WAL_EXPORT int wal_opener_stats_json(wal_opener *o, char **ret);

/**
 * @brief Close every wal still open (see "Lifetime"), release the backend
 *        and free the opener.  NULL is fine.  Blocks until done.
 */
WAL_EXPORT void wal_opener_close(wal_opener *o);

/* ---- WAL ---- */

struct wal_open_opts {
        const char *channel;                       /* walimpls_channel_name_valid() */
        int64_t term;                              /* >= 0 */
        enum wal_access access;                    /* WAL_ACCESS_RO or WAL_ACCESS_RW */
        const struct wal_interceptor *interceptors; /* optional extra chain, copied */
        size_t n_interceptors;
};

/**
 * @brief Open a channel.
 *
 * Read-write: create the channel if missing, take ownership at @p term
 * (fencing every lower term) and append a first time-tick message directly to
 * the backend, which fences the previous writer and anchors this term's
 * clock above every tick already in the log.
 * @param o        the opener (borrowed).
 * @param channel  channel name (copied): 1..200 bytes of [A-Za-z0-9._-], not
 *                 starting with '.' or '-'.
 * @param term     ownership term, >= 0.
 * @param access   WAL_ACCESS_RO or WAL_ACCESS_RW.
 * @param ret      the wal, set only on success (owned by the caller, released
 *                 with wal_close()).
 * @returns 0; -EINVAL bad argument (named); -ENOENT read-only open of a
 *          channel that does not exist; -ESTALE a higher term owns it;
 *          -ESHUTDOWN the opener is closing; a backend error.
 * @remark Thread-safe; may block.
 * @remark Memory: a read-write wal keeps its copies of the messages appended
 *         through it (which the write-ahead cache holds and tailing scanners
 *         hand out) in chunks of 64 KiB growing to 2 MiB, faulted in ahead of
 *         use, the next one made once the current one is half used.  A chunk
 *         is freed only when every message in it has been released, so a
 *         message the program keeps a reference to keeps its whole chunk.
 */
WAL_EXPORT int wal_open(wal_opener *o, const char *channel, int64_t term,
                        enum wal_access access, wal **ret, wal_error **reterr);

/** @brief wal_open() with options, including extra interceptors.
 *  @param opts  borrowed; everything in it is copied. */
WAL_EXPORT int wal_open_ex(wal_opener *o, const struct wal_open_opts *opts, wal **ret,
                           wal_error **reterr);

/** @returns the channel name (borrowed, lives as long as @p w), NULL for NULL. */
WAL_EXPORT const char *wal_channel(const wal *w);
/** @returns the term @p w was opened with, -1 for NULL. */
WAL_EXPORT int64_t wal_term(const wal *w);
/** @returns the access mode, 0 for NULL. */
WAL_EXPORT enum wal_access wal_access_mode(const wal *w);

/**
 * @brief Completion of an append.
 * @param userdata  as given to wal_append().
 * @param status    0 when durable; else a negative errno: -ECANCELED (closed
 *                  while in flight), -ESTALE (fenced), -EMSGSIZE (larger
 *                  than the backend takes, though within message.max_bytes:
 *                  on Kafka the brokers' message.max.bytes, 1,000,000 bytes
 *                  by default, is the lower limit), -EIO, ...
 * @param msg       when @p status is 0: the immutable message as written
 *                  (ID, time tick, term, last-confirmed ID), borrowed for the
 *                  call (wal_msg_ref() to keep it); else NULL.
 * @param err       optional detail, borrowed for the call; may be NULL.
 */
typedef void wal_append_done_fn(void *userdata, int status, const wal_msg *msg,
                                const wal_error *err);

/**
 * @brief Append one message; completes asynchronously.
 * @param w     a read-write wal (borrowed).
 * @param msg   a WAL_MSG_DATA message (borrowed: copied before this returns,
 *              header fields reset; the caller keeps and may reuse it).
 * @param done  called exactly once if this returns 0, never otherwise;
 *              NULL for none.
 * @param userdata  passed to @p done (borrowed).
 * @param reterr  optional detail when this returns < 0.
 * @returns 0 if under way; -EINVAL bad argument (NULL, a type other than
 *          data, a property key starting with '_', an
 *          invalid vchannel name); -EMSGSIZE larger than message.max_bytes;
 *          -EROFS read-only wal; -ESTALE fenced; -ESHUTDOWN closing;
 *          a backend error; or what an interceptor refused with.
 * @remark Thread-safe; never waits for durability.
 */
WAL_EXPORT int wal_append(wal *w, wal_msg *msg, wal_append_done_fn *done, void *userdata,
                          wal_error **reterr);

/**
 * @brief Append one message handed over by the caller: wal_append() without
 *        the copy.
 * @param msg   a WAL_MSG_DATA message.  On success (0) the caller's
 *              reference is taken over: the caller must not use @p msg
 *              afterwards (wal_msg_ref() it first to keep looking at it).
 *              When that reference is the message's only one and it is
 *              mutable, the message itself is stamped and written, and is
 *              the immutable message the callback and scanners see; else
 *              it is copied as wal_append() copies, and the reference
 *              released.  On an error the reference stays the caller's (to
 *              retry or release), and so does the message, though its
 *              header fields (time tick, term, last-confirmed ID,
 *              transaction) may have changed; an append resets them anyway.
 * @returns as wal_append().
 * @remark Thread-safe; never waits for durability.
 */
WAL_EXPORT int wal_append_take(wal *w, wal_msg *msg, wal_append_done_fn *done,
                               void *userdata, wal_error **reterr);

/**
 * @brief Append one message and wait until it is durable (or failed).
 * @param msg      as for wal_append() (borrowed, copied).
 * @param ret_msg  optional: the immutable message as written (one reference,
 *                 owned by the caller), set only on success.
 * @returns 0, any error of wal_append() or of its completion, or -ETIMEDOUT
 *          after the append.timeout property (the append itself then still
 *          completes in the background).
 * @remark Thread-safe; blocks.  Never call it from an append callback (it
 *         returns -EDEADLK there).
 */
WAL_EXPORT int wal_append_wait(wal *w, wal_msg *msg, wal_msg **ret_msg, wal_error **reterr);

/* What a scanner delivers; every condition set must hold (AND).  Time
 * ticks of a transaction are those of its commit. */
struct wal_filter {
        const char *vchannel;   /* NULL: every vchannel; else only messages of this
                                   vchannel and those of no vchannel (time ticks, and
                                   data appended without one: visible to every
                                   vchannel; `walctl read --vchannel` leaves those
                                   data out) */
        uint32_t types;         /* 0: every type; else a set of WAL_FILTER_TYPE(t) */
        bool tt_gt_set;         /* deliver only time tick > tt_gt */
        uint64_t tt_gt;
        bool tt_ge_set;         /* deliver only time tick >= tt_ge */
        uint64_t tt_ge;
};
#define WAL_FILTER_TYPE(t) (1u << (unsigned)(t))

/**
 * @brief Open a scanner.
 * @param deliver  where to start (borrowed, copied): all, latest, start-from
 *                 ID, start-after ID, from a time tick.
 * @param filter   optional (borrowed, copied): NULL delivers everything.
 * @param ret      the scanner, set only on success (owned by the caller,
 *                 released with wal_scanner_close()).
 * @returns 0; -EINVAL bad policy or filter; -ESHUTDOWN closing; -ERANGE a
 *          start ID that was truncated away; a backend error.
 */
WAL_EXPORT int wal_read(wal *w, const struct wal_deliver *deliver,
                        const struct wal_filter *filter, wal_scanner **ret,
                        wal_error **reterr);

/**
 * @brief Called by wal_replay() with one batch of records.
 * @param views  @p n >= 1 records in ID order (borrowed: valid during this
 *               call only; copy what you keep, or wal_msg_view_to_msg()).
 * @returns 0 to go on; any other value stops the replay, which returns it.
 */
typedef int wal_replay_fn(void *arg, const struct wal_msg_view *views, size_t n);

/**
 * @brief Replay the channel from @p deliver on: every record as stored,
 *        handed to @p fn in batches of views into the backend's read buffer
 *        (wal/wal-message.h), with no message object, allocation or copy per
 *        record.  For embedders that rebuild their state from the log at
 *        startup.
 *
 * Unlike a scanner it reads the backend directly: no write-ahead cache, no
 * filters, no transaction assembly (begin, body, commit and rollback records
 * and time ticks come as they were written), and it stops after the last
 * record the backend reported when the replay began (its info; a backend
 * that cannot report it is read until nothing more is there at once).
 * Every record
 * passed the same checks a scanner makes.  Backends without a batch read
 * (walimpls scanner.next_batch) are read one message at a time, with the
 * same result.
 * @param deliver  WAL_DELIVER_ALL, WAL_DELIVER_START_FROM or
 *                 WAL_DELIVER_START_AFTER (borrowed).
 * @returns 0 at the end; the non-zero value @p fn returned; -EINVAL bad
 *          argument or policy; -ESHUTDOWN closing; -ERANGE a start ID that
 *          was truncated away; -EBADMSG a damaged record (the error names
 *          where; the records before it were delivered); -ETIMEDOUT no
 *          record came for 10 s before the end; a backend error.
 * @remark wal_close() waits for a replay running in another thread to end.
 */
WAL_EXPORT int wal_replay(wal *w, const struct wal_deliver *deliver, wal_replay_fn *fn,
                          void *arg, wal_error **reterr);

/**
 * @brief Allow the backend to delete everything up to and including @p id.
 * @returns 0; -EINVAL (NULL, WAL_MSGID_NONE, or an ID after the channel's
 *          last ID: nothing is truncated); -EOPNOTSUPP; -EROFS;
 *          -ESHUTDOWN; a backend error.
 * @remark Thread-safe; may block.
 */
WAL_EXPORT int wal_truncate(wal *w, struct wal_msgid id, wal_error **reterr);

struct wal_info {
        const char *channel;        /* borrowed, lives as long as the wal */
        int64_t term;               /* term of this handle */
        enum wal_access access;
        struct wal_msgid first_id;  /* earliest retained, NONE if empty/unknown */
        struct wal_msgid last_id;   /* latest written, NONE if empty/unknown */
        int64_t count;              /* retained messages, -1 unknown */
        int64_t bytes;              /* retained bytes, -1 unknown */
        int64_t owner_term;         /* term recorded as owner by the backend, -1 unknown */
        const char *durability;     /* static text, "unknown" if the backend is silent */
        uint64_t last_time_tick;    /* newest tick this handle assigned, 0 if none */
};

/**
 * @brief Describe the channel.
 * @param ret  filled on success.
 * @returns 0, -EINVAL, -ESHUTDOWN, a backend error.  A backend without an
 *          info method yields unknown values, not an error.
 */
WAL_EXPORT int wal_info(wal *w, struct wal_info *ret, wal_error **reterr);

/**
 * @brief Counters and latency histograms of this wal as one JSON object
 *        (schema "v":1; see the metrics interceptor in adaptor/metrics.c).
 * @param ret  NUL-terminated text (owned by the caller, free()).
 * @returns 0, -EINVAL, -ENOMEM.  Works on a closed wal too.
 */
WAL_EXPORT int wal_stats_json(wal *w, char **ret);

/**
 * @brief Close @p w (see "Lifetime") and release the handle.  NULL is fine.
 *        Blocks until in-flight appends completed and scanners ended.
 */
WAL_EXPORT void wal_close(wal *w);

/* ---- Scanner ---- */

/**
 * @brief Next message in time-tick order.
 * @param timeout_ms  0: do not wait; -1: wait forever; else at most this long.
 * @param ret         an immutable message (one reference, owned by the
 *                    caller), set only on success.
 * @returns 0; -ETIMEDOUT nothing in time; -ESHUTDOWN the scanner (or its
 *          wal) was closed; -ERANGE the position was truncated away; another
 *          negative errno if the scanner failed (every later call returns
 *          the same); -EINVAL bad argument.
 * @remark One thread at a time per scanner; wal_scanner_close() may run
 *         concurrently from another thread and makes this return promptly.
 */
WAL_EXPORT int wal_scanner_next(wal_scanner *s, int timeout_ms, wal_msg **ret,
                                wal_error **reterr);

/**
 * @brief A descriptor that polls readable when wal_scanner_next(s, 0) may
 *        deliver (it can be readable spuriously; after next returned
 *        -ETIMEDOUT it becomes readable no later than a message is ready).
 * @returns the fd (owned by the scanner, valid until close), or -EINVAL.
 */
WAL_EXPORT int wal_scanner_fd(wal_scanner *s);

/**
 * @brief Where @p s stands in the log, and whether it has reached @p id.
 *
 * A scanner consumes the records of its channel one by one in ID order and
 * either delivers each (wal_scanner_next()) or drops it: left out by its
 * filter or its deliver policy (before the time tick it starts from), a
 * transaction's begin, body or commit held until the commit (the assembled
 * WAL_MSG_TXN is delivered at the commit's ID), a rolled-back or expired
 * transaction, a fenced writer's straggler.  Its position is the ID of the
 * last record it consumed, delivered or dropped.  A scanner opened with
 * WAL_DELIVER_START_AFTER starts with that ID as its position, one opened
 * with WAL_DELIVER_LATEST with the newest record's ID when the wal's
 * write-ahead cache holds it (a read-write wal); any other has none until
 * it consumed its first record.
 *
 * So a reader that must stop at an ID it learnt earlier (the last ID of
 * wal_info()) knows it is there once this returns 1, even when the records
 * up to that ID are all dropped and no wal_scanner_next() will ever return
 * them; while it returns 0, the scanner has records to consume before @p id
 * (or the backend has not handed them over yet).  The position only moves
 * inside wal_scanner_next(), which consumes every record at hand before it
 * returns -ETIMEDOUT.
 *
 * The position is not a place to resume from after a message that is still
 * held: restarting after it loses a transaction whose commit comes later.
 * Resume after the last message delivered.
 *
 * @param id       the ID to compare with; WAL_MSGID_NONE asks only for the
 *                 position (and the call returns 0).
 * @param ret_pos  optional: the position, or WAL_MSGID_NONE when the
 *                 scanner has none yet.
 * @returns 1 the position is at or after @p id; 0 it is before, or there
 *          is none yet; -EINVAL @p s is NULL.
 * @remark Like wal_scanner_next(), one thread at a time per scanner: do not
 *         call it while another thread is in wal_scanner_next() on @p s.
 *         It works on a scanner whose wal or opener was closed (the
 *         position where it stopped), until wal_scanner_close().  It does
 *         not block or allocate.
 */
WAL_EXPORT int wal_scanner_position(const wal_scanner *s, struct wal_msgid id,
                                    struct wal_msgid *ret_pos, wal_error **reterr);

/** @returns the scanner's name "<channel>/<term>/<n>" (borrowed), NULL for NULL. */
WAL_EXPORT const char *wal_scanner_name(const wal_scanner *s);

/** @brief Close and release; NULL is fine.  Safe while another thread waits
 *  in wal_scanner_next() (it returns -ESHUTDOWN). */
WAL_EXPORT void wal_scanner_close(wal_scanner *s);

/* ---- Transactions ----
 *
 * A transaction groups messages that readers see as one WAL_MSG_TXN message
 * (wal_msg_txn_body_at()) at the position of its commit, or never (rolled
 * back or expired).  It expires when idle longer than its keepalive, measured
 * between the time ticks of its messages.
 */

/**
 * @brief Begin a transaction (appends and waits for its begin message).
 * @param vchannel      optional (copied): the vchannel of the whole transaction.
 * @param keepalive_ms  0 means the txn.keepalive property.
 * @param ret           the transaction (owned by the caller; consumed by
 *                      wal_txn_commit() or wal_txn_rollback()).
 * @returns 0; -EINVAL; -EROFS; -ESTALE; -ESHUTDOWN; a backend error.
 */
WAL_EXPORT int wal_txn_begin(wal *w, const char *vchannel, uint32_t keepalive_ms,
                             wal_txn **ret, wal_error **reterr);

/**
 * @brief Append a body message to an open transaction; asynchronous.
 * @param msg  a mutable WAL_MSG_DATA message (borrowed, copied); its vchannel
 *             is replaced by the transaction's.
 * @returns as wal_append(), plus -ETIME the transaction expired, -EBUSY it is
 *          committing or rolled back.  @p done runs exactly once iff 0.
 */
WAL_EXPORT int wal_txn_append(wal_txn *t, wal_msg *msg, wal_append_done_fn *done,
                              void *userdata, wal_error **reterr);

/**
 * @brief Commit: wait for the bodies, then append the commit message.
 *        Consumes @p t in every case.
 * @param ret_msg  optional: the immutable commit message (one reference).
 * @returns 0 committed; -ETIME expired (nothing is visible); -EIO a body
 *          failed (the transaction is rolled back); -EDEADLK called inside
 *          an append callback, where waiting for the bodies would wait for
 *          ever (the transaction is rolled back: use wal_txn_commit_async()
 *          there); other append errors.
 */
WAL_EXPORT int wal_txn_commit(wal_txn *t, wal_msg **ret_msg, wal_error **reterr);

/**
 * @brief Commit without waiting: once the bodies in flight have completed,
 *        append the commit message; @p done reports the outcome.  Consumes
 *        @p t in every case.  Callable anywhere, append callbacks included.
 * @param done  called exactly once if this returns 0, never otherwise (NULL
 *              for none), on the wal's completion thread, never inside this
 *              call; its status is what wal_txn_commit() would return (0
 *              committed, with the commit message; -ETIME expired; -EIO a
 *              body failed and the transaction is rolled back; an append
 *              error of the commit message).
 * @param userdata  passed to @p done (borrowed).
 * @returns 0 under way; or, when no body was in flight and the commit
 *          message was refused at once, its error (-ETIME expired,
 *          -ESHUTDOWN closing, ...; the transaction is not committed).
 */
WAL_EXPORT int wal_txn_commit_async(wal_txn *t, wal_append_done_fn *done, void *userdata,
                                    wal_error **reterr);

/** @brief Roll back (readers never see it).  Consumes @p t in every case.
 *  Inside an append callback it does not wait: the rollback message is
 *  appended once the bodies in flight have completed.
 *  @returns 0, or an append error of the rollback message (readers still
 *  never see the transaction).  NULL is fine (returns -EINVAL). */
WAL_EXPORT int wal_txn_rollback(wal_txn *t, wal_error **reterr);

/** @returns the transaction ID (non-zero), 0 for NULL. */
WAL_EXPORT uint64_t wal_txn_id(const wal_txn *t);

WAL_END_DECLS

#endif /* WAL_API_H */
