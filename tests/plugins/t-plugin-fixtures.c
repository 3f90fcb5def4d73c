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
 */
#include <stddef.h>
#include <string.h>

#include "t-helpers.h"

int t_fixture_sample_setup(wal_config *cfg, void **state);
void t_fixture_sample_teardown(void *state);

static const struct t_backend_fixture fixtures[] = {
        { "memory", NULL, NULL },
        { "sample", t_fixture_sample_setup, t_fixture_sample_teardown },
};

const struct t_backend_fixture *t_backend_fixture_find(const char *name)
{
        for (size_t i = 0; name && i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
                if (strcmp(fixtures[i].name, name) == 0)
                        return &fixtures[i];
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
