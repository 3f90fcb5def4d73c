/* SPDX-License-Identifier: MIT */
/*
 * tests/registry/test-registry.c: the backend registry (wal/wal-registry.h).
 *
 * Runs against the internal static library, so the registry sees every
 * built-in backend (the memory backend at least) plus one linker-set entry
 * this file registers itself.  Criterion runs each test in its own process,
 * so each test starts from a registry holding only the built-in backends;
 * run-time additions never leak from one test into another.  The builders
 * here are descriptors only: the registry never calls build, and build
 * answers -EOPNOTSUPP if anything did.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <wal/wal-config.h>
#include <wal/wal-registry.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "test descriptor: nothing to build");
}

#define T_BUILDER(n) { .version = WALIMPLS_VERSION, .name = (n), .description = "test", \
                       .caps = 0, .properties = NULL, .build = t_build }

/* A linker-set entry of this test binary. */
static const struct walimpls_builder t_linkset_builder = T_BUILDER("t-linkset");
WAL_REGISTER_BACKEND(t_linkset_builder);

static void assert_sorted(void)
{
        size_t n = wal_registry_count();
        for (size_t i = 1; i < n; i++) {
                const struct walimpls_builder *a = wal_registry_at(i - 1);
                const struct walimpls_builder *b = wal_registry_at(i);
                cr_assert(a && b, "entry %zu of %zu missing", i, n);
                cr_assert_lt(strcmp(a->name, b->name), 0, "'%s' before '%s'", a->name, b->name);
        }
}

/* ---- Linker-set registration ---- */

Test(registry, memory_backend_is_builtin)
{
        const struct walimpls_builder *b = NULL;
        wal_error *err = NULL;
        int r = wal_registry_find("memory", &b, &err);
        cr_assert_eq(r, 0, "find memory: %s", wal_error_message(err));
        cr_assert_not_null(b);
        cr_expect_str_eq(b->name, "memory");
        cr_expect_eq(b->version, WALIMPLS_VERSION);
        cr_expect_not_null(b->build);
        cr_expect_str_eq(wal_registry_origin(b), "builtin");
        cr_expect_null(err, "success leaves reterr untouched");
}

Test(registry, own_linker_set_entry_is_found)
{
        const struct walimpls_builder *b = NULL;
        cr_assert_eq(wal_registry_find("t-linkset", &b, NULL), 0);
        cr_expect_eq(b, &t_linkset_builder, "the very descriptor registered");
        cr_expect_str_eq(wal_registry_origin(b), "builtin");
}

Test(registry, no_problems_without_duplicates)
{
        cr_expect_eq(wal_registry_problem_count(), 0, "first problem: %s",
                     wal_registry_problem(0) ? wal_registry_problem(0) : "(none)");
        cr_expect_null(wal_registry_problem(0));
}

/* ---- Run-time registration ---- */

Test(registry, runtime_add_is_found_with_runtime_origin)
{
        static const struct walimpls_builder b = T_BUILDER("t-alpha");
        size_t before = wal_registry_count();
        wal_error *err = NULL;
        cr_assert_eq(wal_registry_add(&b, &err), 0, "%s", wal_error_message(err));
        cr_expect_null(err);
        cr_expect_eq(wal_registry_count(), before + 1);

        const struct walimpls_builder *found = NULL;
        cr_assert_eq(wal_registry_find("t-alpha", &found, NULL), 0);
        cr_expect_eq(found, &b);
        cr_expect_str_eq(wal_registry_origin(&b), "runtime");
}

Test(registry, duplicate_name_is_eexist_naming_it)
{
        static const struct walimpls_builder first = T_BUILDER("t-dup");
        static const struct walimpls_builder second = T_BUILDER("t-dup");
        cr_assert_eq(wal_registry_add(&first, NULL), 0);
        size_t count = wal_registry_count();

        wal_error *err = NULL;
        cr_expect_eq(wal_registry_add(&second, &err), -EEXIST);
        cr_assert_not_null(err);
        cr_expect_eq(wal_error_code(err), -EEXIST);
        cr_expect(strstr(wal_error_message(err), "'t-dup'"), "message: %s",
                  wal_error_message(err));
        wal_error_free(err);

        /* The same descriptor twice is a duplicate too. */
        cr_expect_eq(wal_registry_add(&first, NULL), -EEXIST);
        cr_expect_eq(wal_registry_count(), count);

        /* The first stays; the refused one is not registered. */
        const struct walimpls_builder *found = NULL;
        cr_assert_eq(wal_registry_find("t-dup", &found, NULL), 0);
        cr_expect_eq(found, &first);
        cr_expect_null(wal_registry_origin(&second));
}

Test(registry, builtin_name_cannot_be_taken_at_run_time)
{
        static const struct walimpls_builder fake = T_BUILDER("memory");
        wal_error *err = NULL;
        cr_expect_eq(wal_registry_add(&fake, &err), -EEXIST);
        cr_expect(strstr(wal_error_message(err), "'memory'"), "message: %s",
                  wal_error_message(err));
        wal_error_free(err);
        const struct walimpls_builder *found = NULL;
        cr_assert_eq(wal_registry_find("memory", &found, NULL), 0);
        cr_expect_neq(found, &fake);
}

Test(registry, bad_version_is_einval)
{
        static const struct walimpls_builder v0 = {
                .version = 0, .name = "t-v0", .description = "test", .build = t_build,
        };
        static const struct walimpls_builder vnext = {
                .version = WALIMPLS_VERSION + 1, .name = "t-vnext", .description = "test",
                .build = t_build,
        };
        const struct walimpls_builder *cases[] = { &v0, &vnext };
        for (size_t i = 0; i < 2; i++) {
                wal_error *err = NULL;
                cr_expect_eq(wal_registry_add(cases[i], &err), -EINVAL, "%s", cases[i]->name);
                cr_assert_not_null(err);
                cr_expect(strstr(wal_error_message(err), cases[i]->name), "message: %s",
                          wal_error_message(err));
                cr_expect(strstr(wal_error_message(err), "version"), "message: %s",
                          wal_error_message(err));
                wal_error_free(err);
                const struct walimpls_builder *found = NULL;
                cr_expect_eq(wal_registry_find(cases[i]->name, &found, NULL), -ENOENT);
                cr_expect_null(found);
        }
}

Test(registry, no_build_method_is_einval)
{
        static const struct walimpls_builder b = {
                .version = WALIMPLS_VERSION, .name = "t-nobuild", .description = "test",
        };
        wal_error *err = NULL;
        cr_expect_eq(wal_registry_add(&b, &err), -EINVAL);
        cr_assert_not_null(err);
        cr_expect(strstr(wal_error_message(err), "t-nobuild") &&
                          strstr(wal_error_message(err), "build"),
                  "message: %s", wal_error_message(err));
        wal_error_free(err);
        cr_expect_null(wal_registry_origin(&b));
}

Test(registry, invalid_names_are_einval)
{
        char long_name[66];
        memset(long_name, 'a', 65);
        long_name[65] = '\0';
        const char *names[] = { NULL, "", "Memory", "has space", "dot.ted", "slash/x",
                                "t\xc3\xa9", long_name };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                struct walimpls_builder b = T_BUILDER(names[i]);
                wal_error *err = NULL;
                cr_expect_eq(wal_registry_add(&b, &err), -EINVAL, "name #%zu '%s'", i,
                             names[i] ? names[i] : "(null)");
                cr_expect_not_null(err, "name #%zu has a message", i);
                wal_error_free(err);
        }
        /* The edges that are valid: 64 characters, digits, '_' and '-'. */
        static char max_name[65];
        memset(max_name, 'b', 64);
        static const struct walimpls_builder ok1 = T_BUILDER("t_0-9");
        static struct walimpls_builder ok2 = T_BUILDER(NULL);
        ok2.name = max_name;
        cr_expect_eq(wal_registry_add(&ok1, NULL), 0);
        cr_expect_eq(wal_registry_add(&ok2, NULL), 0);
}

/* ---- Look-up ---- */

Test(registry, unknown_name_is_enoent_listing_known_names)
{
        static const struct walimpls_builder one = T_BUILDER("t-one");
        static const struct walimpls_builder two = T_BUILDER("t-two");
        cr_assert_eq(wal_registry_add(&one, NULL), 0);
        cr_assert_eq(wal_registry_add(&two, NULL), 0);

        const struct walimpls_builder *found = &one;
        wal_error *err = NULL;
        cr_expect_eq(wal_registry_find("t-zzz", &found, &err), -ENOENT);
        cr_expect_eq(found, &one, "*ret untouched on failure");
        cr_assert_not_null(err);
        cr_expect_eq(wal_error_code(err), -ENOENT);
        const char *msg = wal_error_message(err);
        cr_expect(strstr(msg, "'t-zzz'"), "names what was asked: %s", msg);
        for (size_t i = 0; i < wal_registry_count(); i++)
                cr_expect(strstr(msg, wal_registry_at(i)->name), "lists '%s': %s",
                          wal_registry_at(i)->name, msg);
        wal_error_free(err);
}

Test(registry, null_arguments)
{
        const struct walimpls_builder *found = NULL;
        wal_error *err = NULL;
        cr_expect_eq(wal_registry_add(NULL, &err), -EINVAL);
        cr_expect_not_null(err);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_registry_add(NULL, NULL), -EINVAL);
        cr_expect_eq(wal_registry_find(NULL, &found, &err), -EINVAL);
        cr_expect_not_null(err);
        wal_error_free(err);
        cr_expect_eq(wal_registry_find(NULL, &found, NULL), -EINVAL);
        cr_expect_eq(wal_registry_find("memory", NULL, NULL), -EINVAL);
        cr_expect_null(found);

        cr_expect_null(wal_registry_origin(NULL));
        static const struct walimpls_builder nameless = T_BUILDER(NULL);
        cr_expect_null(wal_registry_origin(&nameless));
        cr_expect_null(wal_registry_at(wal_registry_count()));
        cr_expect_null(wal_registry_at(SIZE_MAX));
        cr_expect_null(wal_registry_problem(wal_registry_problem_count()));
        cr_expect_null(wal_registry_problem(SIZE_MAX));
}

Test(registry, count_and_at_are_in_name_order)
{
        static const struct walimpls_builder z = T_BUILDER("t-zeta");
        static const struct walimpls_builder a = T_BUILDER("t-alpha");
        static const struct walimpls_builder m = T_BUILDER("t-mid");
        static const struct walimpls_builder first = T_BUILDER("0-first");
        size_t before = wal_registry_count();
        assert_sorted();
        cr_assert_eq(wal_registry_add(&z, NULL), 0);
        cr_assert_eq(wal_registry_add(&a, NULL), 0);
        cr_assert_eq(wal_registry_add(&m, NULL), 0);
        cr_assert_eq(wal_registry_add(&first, NULL), 0);
        cr_expect_eq(wal_registry_count(), before + 4);
        assert_sorted();
        cr_expect_eq(wal_registry_at(0), &first, "'0-first' sorts first");

        /* Every entry is reachable by at() and by find(), the same pointer. */
        for (size_t i = 0; i < wal_registry_count(); i++) {
                const struct walimpls_builder *b = wal_registry_at(i), *f = NULL;
                cr_assert_eq(wal_registry_find(b->name, &f, NULL), 0, "%s", b->name);
                cr_expect_eq(f, b);
                cr_expect_not_null(wal_registry_origin(b));
        }
}

Test(registry, origin_tells_builtin_from_runtime)
{
        static const struct walimpls_builder b = T_BUILDER("t-origin");
        cr_expect_null(wal_registry_origin(&b), "not registered yet");
        cr_assert_eq(wal_registry_add(&b, NULL), 0);
        size_t builtin = 0, runtime = 0;
        for (size_t i = 0; i < wal_registry_count(); i++) {
                const char *o = wal_registry_origin(wal_registry_at(i));
                cr_assert_not_null(o);
                if (strcmp(o, "builtin") == 0)
                        builtin++;
                else if (strcmp(o, "runtime") == 0)
                        runtime++;
        }
        cr_expect_geq(builtin, 2, "memory and t-linkset");
        cr_expect_eq(runtime, 1);
        cr_expect_str_eq(wal_registry_origin(&b), "runtime");
}

/* ---- Properties of registered backends ---- */

static const struct wal_property t_props[] = {
        { "tprop.size", WAL_PROP_SIZE, "4k", 1, 1 << 20, NULL, 0, "A test size." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};
static const struct wal_property t_props_refused[] = {
        { "trefused.x", WAL_PROP_INT, "1", 0, 10, NULL, 0, "Never registered." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

Test(registry, backend_properties_join_the_configuration)
{
        static const struct walimpls_builder b = {
                .version = WALIMPLS_VERSION, .name = "tprop", .description = "test",
                .properties = t_props, .build = t_build,
        };
        static const struct walimpls_builder dup = {
                .version = WALIMPLS_VERSION, .name = "tprop", .description = "test",
                .properties = t_props_refused, .build = t_build,
        };
        cr_expect_null(wal_config_find_property("tprop.size"));
        cr_assert_eq(wal_registry_add(&b, NULL), 0);
        cr_expect_eq(wal_config_find_property("tprop.size"), &t_props[0]);

        wal_config *c = NULL;
        cr_assert_eq(wal_config_new(&c), 0);
        cr_expect_eq(wal_config_set(c, "tprop.size", "8k", NULL), 0);
        uint64_t v = 0;
        cr_expect_eq(wal_config_get_size(c, "tprop.size", &v), 0);
        cr_expect_eq(v, 8192);
        wal_config_free(c);

        /* A refused registration brings no properties. */
        cr_expect_eq(wal_registry_add(&dup, NULL), -EEXIST);
        cr_expect_null(wal_config_find_property("trefused.x"));
}

/* ---- Threads ---- */

#define T_THREADS 4
#define T_PER_THREAD 16

static struct walimpls_builder t_many[T_THREADS][T_PER_THREAD];
static char t_many_names[T_THREADS][T_PER_THREAD][16];

static void *add_many(void *arg)
{
        size_t t = (size_t)(uintptr_t)arg;
        for (size_t i = 0; i < T_PER_THREAD; i++)
                if (wal_registry_add(&t_many[t][i], NULL) != 0)
                        return (void *)1;
        return NULL;
}

Test(registry, concurrent_adds_all_land)
{
        for (size_t t = 0; t < T_THREADS; t++) {
                for (size_t i = 0; i < T_PER_THREAD; i++) {
                        snprintf(t_many_names[t][i], sizeof(t_many_names[t][i]), "t-th%zu-%02zu",
                                 t, i);
                        t_many[t][i] = (struct walimpls_builder)T_BUILDER(t_many_names[t][i]);
                }
        }
        size_t before = wal_registry_count();
        pthread_t th[T_THREADS];
        for (size_t t = 0; t < T_THREADS; t++)
                cr_assert_eq(pthread_create(&th[t], NULL, add_many, (void *)(uintptr_t)t), 0);
        for (size_t t = 0; t < T_THREADS; t++) {
                void *res = (void *)1;
                pthread_join(th[t], &res);
                cr_expect_null(res, "thread %zu had a refused add", t);
        }
        cr_expect_eq(wal_registry_count(), before + T_THREADS * T_PER_THREAD);
        assert_sorted();
        for (size_t t = 0; t < T_THREADS; t++) {
                for (size_t i = 0; i < T_PER_THREAD; i++) {
                        const struct walimpls_builder *f = NULL;
                        cr_expect_eq(wal_registry_find(t_many_names[t][i], &f, NULL), 0);
                        cr_expect_eq(f, &t_many[t][i]);
                }
        }
}
