/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-types.h: small value types shared by the public API and the
 * backend interface (walimpls).
 */
#ifndef WAL_TYPES_H
#define WAL_TYPES_H

#include <stdint.h>

#include <wal/wal-common.h>
#include <wal/wal-msgid.h>

WAL_BEGIN_DECLS

/* How a channel is opened.  Read-write takes ownership at a term. */
enum wal_access {
        WAL_ACCESS_RO = 1,
        WAL_ACCESS_RW = 2,
};

/* Where a reader starts. */
enum wal_deliver_policy {
        WAL_DELIVER_ALL = 1,        /* from the earliest retained message */
        WAL_DELIVER_LATEST,         /* only messages appended after the reader starts */
        WAL_DELIVER_START_FROM,     /* from an ID, inclusive */
        WAL_DELIVER_START_AFTER,    /* after an ID, exclusive */
        WAL_DELIVER_FROM_TIME_TICK, /* from the first message with tick >= time_tick
                                       (public API only; backends never see it) */
};

struct wal_deliver {
        enum wal_deliver_policy policy;
        struct wal_msgid id;        /* START_FROM / START_AFTER */
        uint64_t time_tick;         /* FROM_TIME_TICK */
};

/** @returns "all", "latest", "start-from", "start-after", "from-time-tick" or NULL. */
WAL_EXPORT const char *wal_deliver_policy_name(enum wal_deliver_policy p);

WAL_END_DECLS

#endif /* WAL_TYPES_H */
