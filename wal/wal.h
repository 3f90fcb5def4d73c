/* SPDX-License-Identifier: MIT */
/*
 * wal/wal.h: the one header an embedding program needs.
 *
 * libwal is a write-ahead log with pluggable storage backends (local file
 * log, Redis Streams, Kafka).  This header pulls in every public part:
 *
 *   wal-error.h     errors: negative errno plus an optional wal_error
 *   wal-msgid.h     message IDs: ordered, with a round-tripping text form
 *   wal-message.h   messages: mutable to append, immutable once written
 *   wal-config.h    configuration properties
 *   wal-types.h     access modes and deliver policies
 *   wal-registry.h  the backend registry
 *   wal-log.h       the log hook
 *   wal-api.h       openers, wals, scanners, interceptors, transactions
 */
#ifndef WAL_H
#define WAL_H

#include <wal/wal-api.h>
#include <wal/wal-common.h>
#include <wal/wal-config.h>
#include <wal/wal-error.h>
#include <wal/wal-log.h>
#include <wal/wal-message.h>
#include <wal/wal-msgid.h>
#include <wal/wal-registry.h>
#include <wal/wal-types.h>

WAL_BEGIN_DECLS

/** @returns the library version, "MAJOR.MINOR.PATCH" (static). */
WAL_EXPORT const char *wal_version(void);

WAL_END_DECLS

#endif /* WAL_H */
