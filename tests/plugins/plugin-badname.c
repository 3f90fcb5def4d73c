/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/plugin-badname.c: a plugin whose builder is invalid (a name
 * with upper case and a blank): refused by the same checks as
 * wal_registry_add().
 */
#include <errno.h>

#include <wal/wal-plugin.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tbadname: must never load");
}

static const struct walimpls_builder b = {
        .version = WALIMPLS_VERSION, .name = "Bad Name", .description = "invalid",
        .caps = 0, .properties = NULL, .build = t_build,
};

WAL_PLUGIN(&b)
