/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/t-backends.c: the backend fixture table used by the
 * conformance suite (tests/conformance) and by any suite that needs "a
 * working opener of backend X".
 *
 * Adding a backend is a three-line change here:
 *
 *   1. write tests/helpers/t-backend-<name>.c defining
 *        int  t_fixture_<name>_setup(wal_config *cfg, void **state);
 *        void t_fixture_<name>_teardown(void *state);
 *      (tests/helpers/meson.build compiles that file when it exists: no
 *      meson change needed);
 *   2. add `T_FIXTURE_DECL(<name>);` below the existing ones;
 *   3. add `T_FIXTURE_ROW(<name>),` to the table.
 *
 * setup gets an empty wal_config to fill (wal_config_set: "local.dir",
 * "redis.url", ...) and may start whatever the backend needs (a
 * redis-server on t_free_port() in a t_tmpdir_new() directory, a Kafka mock
 * cluster); it returns 0 or a negative errno and stores private state for
 * teardown, which must stop and remove everything setup made (by PID, never
 * by name).  The conformance suite runs setup/teardown around every test
 * case, each in its own criterion worker process.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "t-helpers.h"
#include "wal-build-config.h"   /* HAVE_KAFKA */

#define T_FIXTURE_DECL(name)                                          \
        int t_fixture_##name##_setup(wal_config *cfg, void **state);  \
        void t_fixture_##name##_teardown(void *state)
#define T_FIXTURE_ROW(name) \
        { #name, t_fixture_##name##_setup, t_fixture_##name##_teardown }

/* Declarations of fixtures defined in t-backend-<name>.c go here. */
#if HAVE_LOCAL
T_FIXTURE_DECL(local);
#endif
#if HAVE_KAFKA
T_FIXTURE_DECL(kafka);
#endif
#if HAVE_REDIS
T_FIXTURE_DECL(redis);
#endif

/* memory: in-process, nothing to start.  WAL_TEST_MEMORY_COMPLETION=thread
 * selects memory.completion=thread (completions on the backend's own thread,
 * cancelled at close) instead of the default inline completions. */
static int t_fixture_memory_setup(wal_config *cfg, void **state)
{
        *state = NULL;
        const char *c = getenv("WAL_TEST_MEMORY_COMPLETION");
        return c && *c ? wal_config_set(cfg, "memory.completion", c, NULL) : 0;
}

static const struct t_backend_fixture fixtures[] = {
        { "memory", t_fixture_memory_setup, NULL },
        /* Rows of other backends go here. */
#if HAVE_LOCAL
        T_FIXTURE_ROW(local),
#endif
#if HAVE_KAFKA
        T_FIXTURE_ROW(kafka),
#endif
#if HAVE_REDIS
        T_FIXTURE_ROW(redis),
#endif
};

const struct t_backend_fixture *t_backend_fixture_find(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
                if (strcmp(fixtures[i].name, name) == 0)
                        return &fixtures[i];
        }
        return NULL;
}

size_t t_backend_fixture_count(void)
{
        return sizeof(fixtures) / sizeof(fixtures[0]);
}

const struct t_backend_fixture *t_backend_fixture_at(size_t i)
{
        return i < t_backend_fixture_count() ? &fixtures[i] : NULL;
}
