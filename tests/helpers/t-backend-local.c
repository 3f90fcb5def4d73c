/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backend-local.c: the local backend's fixture.
 *
 * setup makes a fresh temporary directory and points local.dir at it, with
 * small segments (256 KiB) so suites cross segment boundaries and truncate
 * has whole segments to delete.  WAL_TEST_LOCAL_IO (auto|uring|sync), when
 * set, forces the write path: the conformance suite runs once per path.
 * teardown removes the directory.
 */
#include <errno.h>
#include <stdlib.h>

#include <wal/wal-config.h>
#include "t-helpers.h"
#include "wal-build-config.h"

#if HAVE_LOCAL

int t_fixture_local_setup(wal_config *cfg, void **state);
void t_fixture_local_teardown(void *state);

int t_fixture_local_setup(wal_config *cfg, void **state)
{
        char *dir = NULL;
        int r = t_tmpdir_new("wal-local", &dir);
        if (r < 0)
                return r;
        const char *io = getenv("WAL_TEST_LOCAL_IO");
        if ((r = wal_config_set(cfg, "backend", "local", NULL)) < 0 ||
            (r = wal_config_set(cfg, "local.dir", dir, NULL)) < 0 ||
            (r = wal_config_set(cfg, "local.segment_bytes", "256k", NULL)) < 0 ||
            (io && *io && (r = wal_config_set(cfg, "local.io", io, NULL)) < 0)) {
                t_rm_rf(dir);
                free(dir);
                return r;
        }
        *state = dir;
        return 0;
}

void t_fixture_local_teardown(void *state)
{
        if (!state)
                return;
        t_rm_rf(state);
        free(state);
}

#endif /* HAVE_LOCAL */
