/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/static-anchored.c: a backend kept in a static archive of its
 * own (as an embedder's would be), registered with WAL_REGISTER_BACKEND and
 * anchored with WAL_BACKEND_ANCHOR so that a program referencing the anchor
 * (WAL_USE_BACKEND) keeps this object in a static link.
 */
#include <errno.h>

#include <wal/wal-registry.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tanchored: a registration test");
}

static const struct walimpls_builder tanchored_builder = {
        .version = WALIMPLS_VERSION, .name = "tanchored",
        .description = "static archive backend, anchored",
        .caps = 0, .properties = NULL, .build = t_build,
};
WAL_REGISTER_BACKEND(tanchored_builder);
WAL_BACKEND_ANCHOR(tanchored);
