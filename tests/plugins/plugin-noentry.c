/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/plugin-noentry.c: a shared object that is not a libwal
 * plugin: it exports a function, but not wal_plugin_entry.
 */
#include <wal/wal-common.h>

WAL_EXPORT int not_a_wal_plugin(void);
int not_a_wal_plugin(void)
{
        return 42;
}
