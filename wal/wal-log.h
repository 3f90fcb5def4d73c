/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-log.h: the log hook.
 *
 * libwal never prints.  Things an operator should hear about (a fallback
 * taken, a reconnect) go to one process-wide hook, which the application
 * installs; with no hook they are dropped.
 */
#ifndef WAL_LOG_H
#define WAL_LOG_H

#include <wal/wal-common.h>

WAL_BEGIN_DECLS

enum wal_log_level {
        WAL_LOG_ERROR = 3,
        WAL_LOG_WARNING = 4,
        WAL_LOG_INFO = 6,
        WAL_LOG_DEBUG = 7,
};

/**
 * @param arg    the pointer given to wal_set_log_hook().
 * @param level  a wal_log_level.
 * @param msg    the message, borrowed for the duration of the call.
 * @remark May be called from any libwal thread, concurrently.
 */
typedef void wal_log_fn(void *arg, int level, const char *msg);

/**
 * @brief Install (or with NULL remove) the process-wide log hook.
 * @param arg  passed to @p fn (borrowed; must outlive the hook).
 * @remark Thread-safe.
 */
WAL_EXPORT void wal_set_log_hook(wal_log_fn *fn, void *arg);

WAL_END_DECLS

#endif /* WAL_LOG_H */
