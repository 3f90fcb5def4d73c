/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/plugin-version.c: a plugin claiming interface version 999,
 * as one built against a future libwal would.  Written out by hand instead
 * of with WAL_PLUGIN() (which always stamps the current version).
 */
#include <errno.h>

#include <wal/wal-plugin.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tversion: must never load");
}

static const struct walimpls_builder b = {
        .version = WALIMPLS_VERSION, .name = "tversion", .description = "future plugin",
        .caps = 0, .properties = NULL, .build = t_build,
};
static const struct walimpls_builder *const builders[] = { &b, NULL };
static const struct wal_plugin desc = { .interface_version = 999, .builders = builders };

WAL_EXPORT const struct wal_plugin *wal_plugin_entry(void);
const struct wal_plugin *wal_plugin_entry(void)
{
        return &desc;
}
