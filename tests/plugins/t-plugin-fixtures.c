/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/t-plugin-fixtures.c: the fixture table of the conformance
 * binary that hosts plugins (test-conformance-shared).
 *
 * That binary links libwal.so instead of libwal's objects, so it cannot use
 * tests/helpers/t-backends.c, whose rows for the built-in servers (the Kafka
 * mock host) call internals libwal.so does not export.  It serves the
 * backends a plugin-hosting program reaches: "memory" (built in, a control
 * run) and "sample" (tools/sample-backend, fixture in
 * tests/helpers/t-backend-sample.c).  Same interface as t-backends.c.
 *
 * Any other backend (your own plugin) gets the generic fixture when
 * $WAL_TEST_PROPERTIES names a properties file: each test case loads it
 * into its configuration (wal_config_load_file syntax), with every
 * "@TMPDIR@" in a value replaced by a fresh temporary directory of that
 * case, removed afterwards.  Example, for a plugin "foo" keeping its data
 * under foo.dir:
 *
 *   printf 'foo.dir = @TMPDIR@/data\n' > foo.properties
 *   WAL_PLUGIN_PATH=build WAL_TEST_BACKEND=foo WAL_TEST_PROPERTIES=foo.properties \
 *       <libwal build>/tests/plugins/test-conformance-shared
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-config.h>
#include "t-helpers.h"

int t_fixture_sample_setup(wal_config *cfg, void **state);
void t_fixture_sample_teardown(void *state);

/* ---- The generic fixture ---- */

#define TMPDIR_MARK "@TMPDIR@"

struct generic_copy {
        wal_config *to;
        const wal_config *from;
        const char *dir;
        int r;
};

/* Copy one line of the file into the case's config, @TMPDIR@ replaced. */
static int generic_visit(void *arg, const char *key, const char *value)
{
        struct generic_copy *gc = arg;
        if (wal_config_source(gc->from, key) != WAL_CONFIG_SOURCE_SET)
                return 0;       /* implied by a profile in the file: not a line */
        size_t ml = strlen(TMPDIR_MARK), dl = strlen(gc->dir), cap = strlen(value) + 1;
        for (const char *p = strstr(value, TMPDIR_MARK); p; p = strstr(p + ml, TMPDIR_MARK))
                cap += dl;
        char *v = malloc(cap), *o = v;
        if (!v)
                return gc->r = -ENOMEM;
        for (const char *p = value; *p;) {
                if (strncmp(p, TMPDIR_MARK, ml) == 0) {
                        memcpy(o, gc->dir, dl);
                        o += dl;
                        p += ml;
                } else {
                        *o++ = *p++;
                }
        }
        *o = '\0';
        wal_error *e = NULL;
        gc->r = wal_config_set(gc->to, key, v, &e);
        if (gc->r < 0)
                fprintf(stderr, "WAL_TEST_PROPERTIES: %s\n", wal_error_message(e));
        wal_error_free(e);
        free(v);
        return gc->r;
}

static int generic_setup(wal_config *cfg, void **state)
{
        const char *path = getenv("WAL_TEST_PROPERTIES");
        wal_config *file = NULL;
        wal_error *e = NULL;
        int r = wal_config_new(&file);
        if (r < 0)
                return r;
        r = wal_config_load_file(file, path, &e);
        if (r < 0) {
                fprintf(stderr, "WAL_TEST_PROPERTIES: %s\n", wal_error_message(e));
                wal_error_free(e);
                wal_config_free(file);
                return r;
        }
        char *dir = NULL;
        r = t_tmpdir_new("wal-plugin-test", &dir);
        if (r == 0) {
                struct generic_copy gc = { cfg, file, dir, 0 };
                wal_config_foreach_set(file, NULL, generic_visit, &gc);
                r = gc.r;
        }
        wal_config_free(file);
        if (r < 0) {
                if (dir)
                        t_rm_rf(dir);
                free(dir);
                return r;
        }
        *state = dir;
        return 0;
}

static void generic_teardown(void *state)
{
        if (!state)
                return;
        t_rm_rf(state);
        free(state);
}

static const struct t_backend_fixture generic = {
        "(WAL_TEST_PROPERTIES)", generic_setup, generic_teardown
};

/* ---- The table ---- */

static const struct t_backend_fixture fixtures[] = {
        { "memory", NULL, NULL },
        { "sample", t_fixture_sample_setup, t_fixture_sample_teardown },
};

const struct t_backend_fixture *t_backend_fixture_find(const char *name)
{
        for (size_t i = 0; name && i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
                if (strcmp(fixtures[i].name, name) == 0)
                        return &fixtures[i];
        const char *props = getenv("WAL_TEST_PROPERTIES");
        return name && props && *props ? &generic : NULL;
}

size_t t_backend_fixture_count(void)
{
        return sizeof(fixtures) / sizeof(fixtures[0]);
}

const struct t_backend_fixture *t_backend_fixture_at(size_t i)
{
        return i < t_backend_fixture_count() ? &fixtures[i] : NULL;
}
