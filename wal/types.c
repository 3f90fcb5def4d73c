/* SPDX-License-Identifier: MIT */
/*
 * wal/types.c: names of the small value types (wal/wal-types.h).
 */
#include <wal/wal-types.h>

const char *wal_deliver_policy_name(enum wal_deliver_policy p)
{
        switch (p) {
        case WAL_DELIVER_ALL: return "all";
        case WAL_DELIVER_LATEST: return "latest";
        case WAL_DELIVER_START_FROM: return "start-from";
        case WAL_DELIVER_START_AFTER: return "start-after";
        case WAL_DELIVER_FROM_TIME_TICK: return "from-time-tick";
        }
        return NULL;
}

#include <wal/wal.h>
#include "wal-build-config.h"

const char *wal_version(void)
{
        return WAL_VERSION;
}
