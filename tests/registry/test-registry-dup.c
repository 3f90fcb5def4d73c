/* SPDX-License-Identifier: MIT */
/*
 * tests/registry/test-registry-dup.c: broken linker-set registrations.
 *
 * A binary of its own because what it registers at link time would disturb
 * the other registry tests: two builders under one name, one built for an
 * interface version this library does not know and one with no name.  The
 * registry must not crash on any of them; it keeps exactly one "t-twin",
 * refuses the others, and reports each refusal through
 * wal_registry_problem_count() / wal_registry_problem(), naming the backend.
 * The built-in backends of the library are unaffected.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <wal/wal-registry.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "test descriptor: nothing to build");
}

static const struct walimpls_builder t_twin_a = {
        .version = WALIMPLS_VERSION, .name = "t-twin", .description = "twin a",
        .build = t_build,
};
static const struct walimpls_builder t_twin_b = {
        .version = WALIMPLS_VERSION, .name = "t-twin", .description = "twin b",
        .build = t_build,
};
static const struct walimpls_builder t_future = {
        .version = WALIMPLS_VERSION + 1, .name = "t-future", .description = "too new",
        .build = t_build,
};
static const struct walimpls_builder t_nameless = {
        .version = WALIMPLS_VERSION, .name = NULL, .description = "no name",
        .build = t_build,
};
WAL_REGISTER_BACKEND(t_twin_a);
WAL_REGISTER_BACKEND(t_twin_b);
WAL_REGISTER_BACKEND(t_future);
WAL_REGISTER_BACKEND(t_nameless);

/* The index of the first problem mentioning @needle, or -1. */
static long problem_mentioning(const char *needle)
{
        for (size_t i = 0; i < wal_registry_problem_count(); i++) {
                const char *p = wal_registry_problem(i);
                cr_assert_not_null(p, "problem %zu", i);
                if (strstr(p, needle))
                        return (long)i;
        }
        return -1;
}

Test(registry_dup, one_twin_is_kept)
{
        size_t twins = 0;
        for (size_t i = 0; i < wal_registry_count(); i++)
                if (strcmp(wal_registry_at(i)->name, "t-twin") == 0)
                        twins++;
        cr_expect_eq(twins, 1);

        const struct walimpls_builder *b = NULL;
        cr_assert_eq(wal_registry_find("t-twin", &b, NULL), 0);
        cr_expect(b == &t_twin_a || b == &t_twin_b);
        cr_expect_str_eq(wal_registry_origin(b), "builtin");
        const struct walimpls_builder *other = b == &t_twin_a ? &t_twin_b : &t_twin_a;
        cr_expect_null(wal_registry_origin(other), "the refused twin is not registered");
}

Test(registry_dup, duplicate_is_reported_as_a_problem)
{
        cr_expect_geq(wal_registry_problem_count(), 3, "twin, future, nameless");
        long i = problem_mentioning("'t-twin'");
        cr_expect_geq(i, 0, "a problem names t-twin");
        i = problem_mentioning("t-future");
        cr_expect_geq(i, 0, "a problem names t-future");
        if (i >= 0)
                cr_expect(strstr(wal_registry_problem((size_t)i), "version"), "%s",
                          wal_registry_problem((size_t)i));
        cr_expect_null(wal_registry_problem(wal_registry_problem_count()));
}

Test(registry_dup, refused_entries_are_not_found)
{
        const struct walimpls_builder *b = NULL;
        cr_expect_eq(wal_registry_find("t-future", &b, NULL), -ENOENT);
        cr_expect_null(wal_registry_origin(&t_future));
        for (size_t i = 0; i < wal_registry_count(); i++)
                cr_expect_not_null(wal_registry_at(i)->name);
}

Test(registry_dup, builtin_backends_are_unaffected)
{
        const struct walimpls_builder *b = NULL;
        cr_assert_eq(wal_registry_find("memory", &b, NULL), 0);
        cr_expect_str_eq(wal_registry_origin(b), "builtin");
        for (size_t i = 1; i < wal_registry_count(); i++)
                cr_expect_lt(strcmp(wal_registry_at(i - 1)->name, wal_registry_at(i)->name), 0);
}

Test(registry_dup, a_runtime_add_of_the_name_is_refused)
{
        static const struct walimpls_builder third = {
                .version = WALIMPLS_VERSION, .name = "t-twin", .description = "twin c",
                .build = t_build,
        };
        wal_error *err = NULL;
        cr_expect_eq(wal_registry_add(&third, &err), -EEXIST);
        cr_expect(strstr(wal_error_message(err), "'t-twin'"), "%s", wal_error_message(err));
        wal_error_free(err);
}
