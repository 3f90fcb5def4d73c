/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/static-unanchored.c: the failure mode the anchor exists
 * for.  This backend sits in a static archive and nothing references its
 * object, so a static link drops it with its registration: test-static
 * checks it is NOT registered (if it ever is, the linker keeps unreferenced
 * archive members and the documented rule needs revisiting).
 */
#include <errno.h>

#include <wal/wal-registry.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tunanchored: a registration test");
}

static const struct walimpls_builder tunanchored_builder = {
        .version = WALIMPLS_VERSION, .name = "tunanchored",
        .description = "static archive backend, not anchored",
        .caps = 0, .properties = NULL, .build = t_build,
};
WAL_REGISTER_BACKEND(tunanchored_builder);
