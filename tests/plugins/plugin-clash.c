/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/plugin-clash.c: a plugin whose backend name is taken.
 * Compiled twice: -DCLASH_NAME="memory" (a built-in) and "tgood-a" (the
 * good plugin's).  Both must be refused as a whole: "tclash-extra", its
 * second backend, must not appear either.
 */
#include <errno.h>

#include <wal/wal-plugin.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tclash: a loader-test descriptor");
}

static const struct walimpls_builder extra = {
        .version = WALIMPLS_VERSION, .name = "tclash-extra", .description = "must not load",
        .caps = 0, .properties = NULL, .build = t_build,
};
static const struct walimpls_builder clash = {
        .version = WALIMPLS_VERSION, .name = CLASH_NAME, .description = "clashes",
        .caps = 0, .properties = NULL, .build = t_build,
};

WAL_PLUGIN(&extra, &clash)
