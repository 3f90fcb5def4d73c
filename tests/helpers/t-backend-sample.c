/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backend-sample.c: fixture of the "sample" plugin backend
 * (tools/sample-backend), which is not built into libwal: the process must
 * have loaded it first (WAL_PLUGIN_PATH naming the plugin's build directory;
 * tests/plugins runs the conformance suite that way).
 *
 * setup makes a fresh temporary directory and points sample.dir at it;
 * teardown removes it.  setup fails with -ENOENT when the plugin is not
 * loaded (sample.dir is then an unknown property).
 */
#include <errno.h>
#include <stdlib.h>

#include <wal/wal-config.h>
#include "t-helpers.h"

int t_fixture_sample_setup(wal_config *cfg, void **state);
void t_fixture_sample_teardown(void *state);

int t_fixture_sample_setup(wal_config *cfg, void **state)
{
        char *dir = NULL;
        int r = t_tmpdir_new("wal-sample", &dir);
        if (r < 0)
                return r;
        if ((r = wal_config_set(cfg, "backend", "sample", NULL)) < 0 ||
            (r = wal_config_set(cfg, "sample.dir", dir, NULL)) < 0) {
                t_rm_rf(dir);
                free(dir);
                return r;
        }
        *state = dir;
        return 0;
}

void t_fixture_sample_teardown(void *state)
{
        if (!state)
                return;
        t_rm_rf(state);
        free(state);
}
