/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-message.h: messages.
 *
 * A message is an opaque, reference-counted object with two states:
 *
 *  - mutable: built by the application (payload, type, string properties,
 *    optional virtual channel) and handed to an append;
 *  - immutable: what an append produced or a scanner delivered.  It adds the
 *    message ID, the time tick, the term of the writer that wrote it and the
 *    last-confirmed ID (reading from there yields every message with a later
 *    time tick).  Setters fail with -EPERM on an immutable message, so one
 *    object can be shared between threads and scanners without copying.
 *
 * Properties are string key/value pairs.  Keys beginning with '_' are
 * reserved for libwal (the validate interceptor rejects them on append).
 * A virtual channel (vchannel) lets many logical streams share one channel;
 * NULL means "every vchannel".
 *
 * Thread safety: reference counting is atomic; reading an immutable message
 * is safe from any thread; a mutable message must not be changed by two
 * threads at once.
 */
#ifndef WAL_MESSAGE_H
#define WAL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal-common.h>
#include <wal/wal-msgid.h>

WAL_BEGIN_DECLS

enum wal_msg_type {
        WAL_MSG_DATA = 1,         /* application data */
        WAL_MSG_TIME_TICK = 2,    /* time tick: lets idle readers advance */
        WAL_MSG_TXN_BEGIN = 3,    /* transaction begin */
        WAL_MSG_TXN_COMMIT = 4,   /* transaction commit */
        WAL_MSG_TXN_ROLLBACK = 5, /* transaction rollback */
        WAL_MSG_TXN = 6,          /* a committed transaction, delivered as one unit */
};
#define WAL_MSG_TYPE_MAX WAL_MSG_TXN

/** @returns "data", "timetick", "txn-begin", "txn-commit", "txn-rollback",
 *  "txn", or NULL for a value outside the enum. */
WAL_EXPORT const char *wal_msg_type_name(enum wal_msg_type type);
/** @brief Parse a name returned by wal_msg_type_name(); 0 or -EINVAL. */
WAL_EXPORT int wal_msg_type_parse(const char *name, enum wal_msg_type *ret);

typedef struct wal_msg wal_msg;

/* ---- Building (mutable messages) ---- */

/**
 * @brief Make a mutable message.
 * @param type     a wal_msg_type.
 * @param payload  bytes, copied (may be NULL when @p len is 0).
 * @param len      payload length.
 * @param ret      the new message with one reference (owned by the caller).
 * @returns 0, -EINVAL (bad type, NULL @p ret, NULL payload with len > 0),
 *          -ENOMEM.
 */
WAL_EXPORT int wal_msg_new(enum wal_msg_type type, const void *payload, size_t len,
                           wal_msg **ret);

/**
 * @brief Set (or replace) a property.  Key and value are copied.
 * @returns 0, -EINVAL (NULL or empty key, NULL value), -EPERM (immutable),
 *          -ENOMEM.
 */
WAL_EXPORT int wal_msg_set_prop(wal_msg *m, const char *key, const char *value);

/** @brief Remove a property; 0 if removed, -ENOENT if absent, -EPERM, -EINVAL. */
WAL_EXPORT int wal_msg_del_prop(wal_msg *m, const char *key);

/**
 * @brief Set the virtual channel (copied); NULL means every vchannel.
 * @returns 0, -EINVAL (empty string), -EPERM, -ENOMEM.
 */
WAL_EXPORT int wal_msg_set_vchannel(wal_msg *m, const char *vchannel);

/* ---- Reference counting ---- */

/** @returns @p m with one more reference; NULL-safe. */
WAL_EXPORT wal_msg *wal_msg_ref(wal_msg *m);
/** @brief Drop one reference, freeing on the last; NULL-safe.  @returns NULL. */
WAL_EXPORT wal_msg *wal_msg_unref(wal_msg *m);
/** For __attribute__((cleanup(wal_msg_unrefp))). */
WAL_EXPORT void wal_msg_unrefp(wal_msg **mp);

/* ---- Reading (any state; all accept NULL and then return 0/NULL/NONE) ---- */

WAL_EXPORT enum wal_msg_type wal_msg_type(const wal_msg *m);
/** @returns the payload (borrowed, lives as long as @p m); *len set if non-NULL. */
WAL_EXPORT const void *wal_msg_payload(const wal_msg *m, size_t *len);
/** @returns the vchannel (borrowed), or NULL for "every vchannel". */
WAL_EXPORT const char *wal_msg_vchannel(const wal_msg *m);
WAL_EXPORT size_t wal_msg_prop_count(const wal_msg *m);
/**
 * @brief The i-th property, in the order they were first set.
 * @returns 0, or -ERANGE if @p i >= wal_msg_prop_count(), -EINVAL for NULL m.
 */
WAL_EXPORT int wal_msg_prop_at(const wal_msg *m, size_t i, const char **key,
                               const char **value);
/** @returns the value of @p key (borrowed), or NULL if absent. */
WAL_EXPORT const char *wal_msg_prop(const wal_msg *m, const char *key);
/** @returns payload length plus every key and value length: the size that
 *  size limits and the write-ahead cache account in. */
WAL_EXPORT size_t wal_msg_size(const wal_msg *m);

WAL_EXPORT bool wal_msg_is_immutable(const wal_msg *m);
/** @returns the message ID; WAL_MSGID_NONE before the message is immutable. */
WAL_EXPORT struct wal_msgid wal_msg_id(const wal_msg *m);
/** @returns the time tick (hybrid logical clock: ms << 18 | logical), 0 if unset.
 *
 *  Ticks a wal assigns are strictly increasing, across terms too.  The
 *  physical part (tick >> 18, ms since the epoch) of an appended message's
 *  tick is never later than the wall clock (CLOCK_REALTIME) when its
 *  wal_append() returned, except the new term's first tick and those that
 *  carry it, which may be 1 ms ahead; and it lags the wall clock at the
 *  call by at most one kernel timer tick (clock_getres() of
 *  CLOCK_REALTIME_COARSE: 4 ms at HZ=250) plus that timer tick's delay,
 *  unless it carries an earlier tick's physical part (more than 2^18
 *  appends in one ms, or the clock set back).  So a read "from a time
 *  tick" of T ms (WAL_DELIVER_FROM_TIME_TICK, T << 18) delivers the
 *  messages stamped at T or later: a message appended less than that lag
 *  after T may be stamped below T and is then not delivered. */
WAL_EXPORT uint64_t wal_msg_time_tick(const wal_msg *m);
/** @returns the term of the writer, 0 if unset. */
WAL_EXPORT int64_t wal_msg_term(const wal_msg *m);
/** @returns the last-confirmed ID, WAL_MSGID_NONE if unset. */
WAL_EXPORT struct wal_msgid wal_msg_last_confirmed(const wal_msg *m);
/** @returns the transaction ID (0 if the message is not part of a transaction). */
WAL_EXPORT uint64_t wal_msg_txn_id(const wal_msg *m);
/** @returns the transaction keepalive in milliseconds (0 if none). */
WAL_EXPORT uint32_t wal_msg_txn_keepalive_ms(const wal_msg *m);

/* ---- Header fields ----
 * Stamped by the WAL on append and by backends when they decode a record.
 * Applications normally leave them alone: append overwrites them.
 * Each returns 0, -EINVAL (NULL), or -EPERM (immutable). */

WAL_EXPORT int wal_msg_set_time_tick(wal_msg *m, uint64_t tt);
WAL_EXPORT int wal_msg_set_term(wal_msg *m, int64_t term);
WAL_EXPORT int wal_msg_set_last_confirmed(wal_msg *m, struct wal_msgid id);
WAL_EXPORT int wal_msg_set_txn(wal_msg *m, uint64_t txn_id, uint32_t keepalive_ms);

/**
 * @brief Make @p m immutable, bound to @p id.
 * @returns 0, -EINVAL (NULL, or @p id is WAL_MSGID_NONE), -EPERM (already).
 */
WAL_EXPORT int wal_msg_freeze(wal_msg *m, struct wal_msgid id);

/**
 * @brief Copy a message: payload, properties, vchannel and header fields.
 *        The copy is mutable and has no ID.
 * @param ret  the copy (owned by the caller).
 * @returns 0, -EINVAL, -ENOMEM.
 */
WAL_EXPORT int wal_msg_copy(const wal_msg *m, wal_msg **ret);

/* ---- Records read in place ----
 *
 * A batch read (the backend scanner method next_batch, walimpls/walimpls.h)
 * hands out records as views into the scanner's read buffer instead of one
 * wal_msg each: no allocation and no copy per record.  A view is valid until
 * the next call on the scanner that produced it (or its close); copy what
 * you keep, or turn a view into a message with wal_msg_view_to_msg().
 * Every view delivered passed the same checks as a decoded message (frame
 * CRC, a well-formed envelope of a known version and type, property keys
 * non-empty, unique and free of NUL bytes, no NUL in the vchannel).
 */
struct wal_msg_view {
        struct wal_msgid id;
        enum wal_msg_type type;
        uint64_t time_tick;
        int64_t term;
        struct wal_msgid last_confirmed;  /* WAL_MSGID_NONE when unset */
        uint64_t txn_id;                  /* 0: not in a transaction */
        uint32_t txn_keepalive_ms;
        uint32_t n_props;                 /* read them with wal_msg_view_prop_at() */
        const char *vchannel;             /* NOT NUL-terminated; NULL when none */
        size_t vchannel_len;
        const void *payload;              /* NULL only when payload_len is 0 */
        size_t payload_len;
        const uint8_t *env;               /* the encoded envelope (private: use the */
        size_t env_len;                   /* accessors); NULL for a foreign record */
};

/**
 * @brief Property @p i (0 .. n_props - 1, in the order they were set) of a view.
 * @param key, key_len, value, value_len  views into the same buffer as @p v
 *        (not NUL-terminated); any may be NULL.
 * @returns 0, -EINVAL (NULL view), -ERANGE (@p i out of range).
 */
WAL_EXPORT int wal_msg_view_prop_at(const struct wal_msg_view *v, size_t i, const char **key,
                                    size_t *key_len, const char **value, size_t *value_len);

/**
 * @brief An immutable message holding a copy of @p v (payload, properties,
 *        vchannel, header fields and ID).
 * @param ret  the message (owned by the caller: one reference).
 * @returns 0, -EINVAL (NULL argument, no ID, or a NULL payload with a
 *          length), -ENOMEM, -EBADMSG (an envelope that does not decode).
 * @remark A view with no envelope (env NULL) is a foreign record, and
 *         becomes a data message holding the payload alone: the fields of
 *         a view are not checked beyond this, so pass only views a scanner
 *         produced.
 */
WAL_EXPORT int wal_msg_view_to_msg(const struct wal_msg_view *v, wal_msg **ret);

/* ---- Transactions delivered as one unit (type WAL_MSG_TXN) ---- */

/** @returns the number of body messages of a WAL_MSG_TXN message, else 0. */
WAL_EXPORT size_t wal_msg_txn_body_count(const wal_msg *m);
/** @returns the i-th body (borrowed, lives as long as @p m), or NULL. */
WAL_EXPORT const wal_msg *wal_msg_txn_body_at(const wal_msg *m, size_t i);
/**
 * @brief Add a body message to a mutable WAL_MSG_TXN message.
 * @param body  a message; a reference is taken (the caller keeps its own).
 * @returns 0, -EINVAL (NULL, @p m is not WAL_MSG_TXN, or @p body is: units
 *          do not nest), -EPERM, -ENOMEM.
 */
WAL_EXPORT int wal_msg_txn_add_body(wal_msg *m, wal_msg *body);

WAL_END_DECLS

#endif /* WAL_MESSAGE_H */
