/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/plugin-good.c: a well-formed plugin with two backends,
 * "tgood-a" (with one property, tgood-a.color) and "tgood-b".  They are
 * descriptors for the loader tests: build answers -EOPNOTSUPP.  The real
 * backend loaded as a plugin is tools/sample-backend.
 */
#include <errno.h>

#include <wal/wal-plugin.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tgood: a loader-test descriptor");
}

static const struct wal_property a_props[] = {
        { "tgood-a.color", WAL_PROP_ENUM, "red", 1, 0, "red|green", 0,
          "A property that exists only when the plugin is loaded." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static const struct walimpls_builder a = {
        .version = WALIMPLS_VERSION, .name = "tgood-a", .description = "loader test A",
        .caps = 0, .properties = a_props, .build = t_build,
};
static const struct walimpls_builder b = {
        .version = WALIMPLS_VERSION, .name = "tgood-b", .description = "loader test B",
        .caps = 0, .properties = NULL, .build = t_build,
};

WAL_PLUGIN(&a, &b)
