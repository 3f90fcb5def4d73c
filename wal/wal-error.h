/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-error.h: the error convention of libwal.
 *
 * Every fallible function returns 0 (or a non-negative count) on success and
 * a negative errno value on failure.  Functions that can say more take a last
 * parameter `wal_error **reterr`: when it is non-NULL and the call fails, a
 * newly allocated error object is stored there, carrying the same code, a
 * message naming what was wrong, and whether retrying may help.  The caller
 * frees it with wal_error_free().  On success *reterr is left untouched.
 *
 * Error codes with a meaning of their own across the library:
 *   -EINVAL     bad argument (message names it)
 *   -ENOENT     unknown name: backend, property, channel
 *   -ESHUTDOWN  the object is closing or closed
 *   -ECANCELED  an operation in flight was cancelled by close
 *   -ESTALE     fenced: a writer with a newer term owns the channel (permanent)
 *   -EROFS      append or truncate on a read-only WAL
 *   -EMSGSIZE   record larger than the configured limit
 *   -EBADMSG    corrupt or undecodable data
 *   -ERANGE     a read position that no longer exists (truncated away)
 *   -ETIMEDOUT  a bounded wait ran out
 *   -EIO/-ENOSPC local I/O failure
 *   -ECONNREFUSED/-EHOSTUNREACH/-ECONNRESET  server unreachable
 *   -EOPNOTSUPP the backend does not implement the operation
 *
 * All accessors accept NULL and then describe "no error".
 */
#ifndef WAL_ERROR_H
#define WAL_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#include <wal/wal-common.h>

WAL_BEGIN_DECLS

typedef struct wal_error wal_error;

/* Flags for wal_error_new(). */
enum {
        WAL_ERROR_RETRIABLE = 1u << 0, /* the same call may succeed later */
        WAL_ERROR_FATAL     = 1u << 1, /* the object that failed is unusable */
};

/**
 * @brief Make an error object.
 * @param code   negative errno value; a positive one is negated, 0 becomes -EIO.
 * @param flags  WAL_ERROR_RETRIABLE and/or WAL_ERROR_FATAL.
 * @param fmt    printf format of the message (no trailing newline).
 * @returns a new object (owned by the caller), or NULL when out of memory.
 * @remark Thread-safe.  Public so that applications and tests can fake failures.
 */
WAL_EXPORT wal_error *wal_error_new(int code, unsigned flags, const char *fmt, ...)
        WAL_PRINTF(3, 4);
WAL_EXPORT wal_error *wal_error_newv(int code, unsigned flags, const char *fmt,
                                     va_list ap) WAL_PRINTF(3, 0);

/**
 * @brief Report an error through an optional out-parameter and return its code.
 *
 * If @p reterr is non-NULL and *reterr is NULL, a new error is stored in it;
 * an error already there is kept (the first, innermost error wins).
 * @returns @p code, negated if it was positive, so that a function can end
 *          with `return wal_error_set(reterr, -EINVAL, 0, "...")`.
 */
WAL_EXPORT int wal_error_set(wal_error **reterr, int code, unsigned flags,
                             const char *fmt, ...) WAL_PRINTF(4, 5);

/**
 * @brief Prefix the message of *reterr with context ("opening orders: ").
 * Does nothing when @p reterr or *reterr is NULL.
 */
WAL_EXPORT void wal_error_prefix(wal_error **reterr, const char *fmt, ...)
        WAL_PRINTF(2, 3);

/** @returns the negative errno code; 0 for NULL. */
WAL_EXPORT int wal_error_code(const wal_error *e);
/** @returns the message (borrowed, lives as long as @p e); "no error" for NULL. */
WAL_EXPORT const char *wal_error_message(const wal_error *e);
/** @returns true if retrying the call may succeed; false for NULL. */
WAL_EXPORT bool wal_error_is_retriable(const wal_error *e);
/** @returns true if the object that failed can no longer be used; false for NULL. */
WAL_EXPORT bool wal_error_is_fatal(const wal_error *e);
/** @returns a deep copy (owned by the caller), or NULL for NULL or out of memory. */
WAL_EXPORT wal_error *wal_error_copy(const wal_error *e);
/** Free @p e; NULL is fine. */
WAL_EXPORT void wal_error_free(wal_error *e);

/**
 * @brief Short description of a negative errno value, naming libwal's own
 *        meanings ("fenced: a newer term owns the channel" for -ESTALE).
 * @returns a static string; never NULL.
 */
WAL_EXPORT const char *wal_strerror(int code);

WAL_END_DECLS

#endif /* WAL_ERROR_H */
