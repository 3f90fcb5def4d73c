/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/test-plugins.c: the plugin loader (wal/wal-plugin.h).
 *
 * The plugins under test are shared modules built next to this binary
 * ($WAL_TEST_PLUGIN_DIR): one good plugin with two backends and one per
 * refusal case.  Each test assembles a fresh temporary directory of symlinks
 * (names chosen so the load order is known: files load in name order) plus
 * files it writes itself (not ELF, unreadable), then loads it through one of
 * the three ways in: wal_registry_load_plugins(), $WAL_PLUGIN_PATH and the
 * plugin.path property.  Criterion runs each test in its own process, so
 * every test starts with a registry that has loaded nothing.
 *
 * This binary links libwal.so, as a program hosting plugins must (the
 * plugins link it too and must share its registry).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wal/wal.h>
#include <wal/wal-plugin.h>

static char *tmp;          /* the plugin directory of the test */

static void setup(void)
{
        char tmpl[] = "/tmp/wal-plugins-XXXXXX";
        cr_assert_not_null(mkdtemp(tmpl));
        tmp = strdup(tmpl);
}

static void teardown(void)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
                cr_log_warn("could not remove %s", tmp);
        free(tmp);
}

TestSuite(plugins, .init = setup, .fini = teardown);

/* Symlink the built plugin @built (e.g. "plugin-good.so") as @name in tmp. */
static void link_plugin(const char *built, const char *name)
{
        const char *dir = getenv("WAL_TEST_PLUGIN_DIR");
        cr_assert(dir && *dir, "WAL_TEST_PLUGIN_DIR is not set (tests/plugins/meson.build)");
        char from[1024], to[1024];
        snprintf(from, sizeof(from), "%s/%s", dir, built);
        snprintf(to, sizeof(to), "%s/%s", tmp, name);
        cr_assert_eq(access(from, R_OK), 0, "%s was not built", from);
        cr_assert_eq(symlink(from, to), 0, "symlink %s: %s", to, strerror(errno));
}

static void write_file(const char *name, const char *text, mode_t mode)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", tmp, name);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(chmod(path, mode), 0);
}

/* The problem that names @file, or NULL. */
static const char *problem_of(const char *file)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", tmp, file);
        for (size_t i = 0; i < wal_registry_problem_count(); i++) {
                const char *p = wal_registry_problem(i);
                if (p && strstr(p, path))
                        return p;
        }
        return NULL;
}

static void expect_refused(const char *file, const char *reason)
{
        const char *p = problem_of(file);
        cr_assert_not_null(p, "no problem names %s", file);
        cr_expect(strstr(p, "refused"), "%s", p);
        cr_expect(strstr(p, reason), "problem of %s does not say '%s': %s", file, reason, p);
}

static void expect_backend(const char *name, const char *file)
{
        const struct walimpls_builder *b = NULL;
        wal_error *e = NULL;
        int r = wal_registry_find(name, &b, &e);
        cr_assert_eq(r, 0, "%s: %s", name, wal_error_message(e));
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", tmp, file);
        cr_expect_str_eq(wal_registry_origin(b), path);
}

static void expect_no_backend(const char *name)
{
        const struct walimpls_builder *b = NULL;
        cr_expect_eq(wal_registry_find(name, &b, NULL), -ENOENT, "%s is registered", name);
}

/* ---- Every refusal, and the rest still load ---- */

Test(plugins, every_refusal_is_named_and_the_rest_load)
{
        link_plugin("plugin-good.so", "a-good.so");
        link_plugin("plugin-version.so", "b-version.so");
        link_plugin("plugin-noentry.so", "c-noentry.so");
        link_plugin("plugin-clash-builtin.so", "d-clash-builtin.so");
        link_plugin("plugin-clash-plugin.so", "e-clash-plugin.so");
        link_plugin("plugin-badname.so", "f-badname.so");
        write_file("g-text.so", "this is not a shared object\n", 0644);
        write_file("h-unreadable.so", "not readable either\n", 0);
        char dangling[1024];
        snprintf(dangling, sizeof(dangling), "%s/i-dangling.so", tmp);
        cr_assert_eq(symlink("/nonexistent/wal-plugin.so", dangling), 0);
        write_file("readme.txt", "not a .so: never looked at\n", 0644);
        link_plugin("plugin-good.so", "z-good-again.so.bak");   /* not *.so */

        size_t before = wal_registry_problem_count();
        wal_error *e = NULL;
        int r = wal_registry_load_plugins(tmp, &e);
        cr_assert_eq(r, -ENOEXEC, "load: %d %s", r, wal_error_message(e));
        /* The error carries the first problem, in file order. */
        cr_expect(strstr(wal_error_message(e), "b-version.so"), "%s", wal_error_message(e));
        wal_error_free(e);

        expect_backend("tgood-a", "a-good.so");
        expect_backend("tgood-b", "a-good.so");
        expect_refused("b-version.so", "interface version 999");
        expect_no_backend("tversion");
        expect_refused("c-noentry.so", WAL_PLUGIN_ENTRY_SYMBOL);
        expect_refused("d-clash-builtin.so", "'memory' is taken (origin: builtin)");
        expect_refused("e-clash-plugin.so", "'tgood-a' is taken");
        expect_no_backend("tclash-extra");     /* refused as a whole */
        expect_refused("f-badname.so", "Bad Name");
        expect_refused("g-text.so", "not a shared object");
        if (geteuid() != 0)
                expect_refused("h-unreadable.so", "Permission denied");
        else   /* root reads anything: then it is refused for what it holds */
                expect_refused("h-unreadable.so", "not a shared object");
        expect_refused("i-dangling.so", "cannot read it");
        cr_expect_null(problem_of("readme.txt"));
        cr_expect_null(problem_of("z-good-again.so.bak"));
        cr_expect_eq(wal_registry_problem_count() - before, 8,
                     "problems: %zu", wal_registry_problem_count() - before);

        /* The built-in is untouched. */
        const struct walimpls_builder *m = NULL;
        cr_assert_eq(wal_registry_find("memory", &m, NULL), 0);
        cr_expect_str_eq(wal_registry_origin(m), "builtin");
}

Test(plugins, loading_again_is_harmless)
{
        link_plugin("plugin-good.so", "good.so");
        cr_assert_eq(wal_registry_load_plugins(tmp, NULL), 0);
        size_t n = wal_registry_count(), p = wal_registry_problem_count();
        /* The same directory, and the same file by another name. */
        link_plugin("plugin-good.so", "good-alias.so");
        cr_assert_eq(wal_registry_load_plugins(tmp, NULL), 0);
        char file[1024];
        snprintf(file, sizeof(file), "%s/good.so", tmp);
        cr_assert_eq(wal_registry_load_plugins(file, NULL), 0);
        cr_expect_eq(wal_registry_count(), n);
        cr_expect_eq(wal_registry_problem_count(), p);
        expect_backend("tgood-a", "good.so");
}

Test(plugins, missing_directory_is_a_problem_reported_once)
{
        char missing[1024];
        snprintf(missing, sizeof(missing), "%s/nope", tmp);
        wal_error *e = NULL;
        cr_assert_eq(wal_registry_load_plugins(missing, &e), -ENOEXEC);
        cr_expect(strstr(wal_error_message(e), missing), "%s", wal_error_message(e));
        wal_error_free(e);
        cr_expect_not_null(problem_of("nope"));
        /* Met again (the variable and the property naming it): one problem. */
        size_t n = wal_registry_problem_count();
        cr_assert_eq(wal_registry_load_plugins(missing, NULL), -ENOEXEC);
        cr_expect_eq(wal_registry_problem_count(), n);
}

/* ---- The ways in ---- */

Test(plugins, wal_plugin_path_loads_at_first_use)
{
        link_plugin("plugin-good.so", "good.so");
        link_plugin("plugin-version.so", "version.so");
        char list[2048];
        snprintf(list, sizeof(list), "/nonexistent-wal-dir:%s", tmp);
        cr_assert_eq(setenv("WAL_PLUGIN_PATH", list, 1), 0);
        expect_backend("tgood-a", "good.so");
        expect_refused("version.so", "interface version 999");
        /* The plugin's property table is known from then on. */
        cr_expect_not_null(wal_config_find_property("tgood-a.color"));
}

Test(plugins, plugin_path_property_loads_and_unlocks_properties)
{
        link_plugin("plugin-good.so", "good.so");
        wal_config *c = NULL;
        cr_assert_eq(wal_config_new(&c), 0);
        wal_error *e = NULL;
        /* Unknown before the plugin is loaded... */
        cr_expect_eq(wal_config_set(c, "tgood-a.color", "green", NULL), -ENOENT);
        cr_assert_eq(wal_config_set(c, "plugin.path", tmp, &e), 0, "%s", wal_error_message(e));
        /* ...known after. */
        cr_assert_eq(wal_config_set(c, "tgood-a.color", "green", &e), 0, "%s",
                     wal_error_message(e));
        cr_expect_eq(wal_config_set(c, "tgood-a.color", "blue", NULL), -EINVAL);
        expect_backend("tgood-b", "good.so");
        /* An opener of a plugin backend goes through the plugin's builder. */
        wal_opener *o = NULL;
        int r = wal_opener_new("tgood-a", c, &o, &e);
        cr_expect_eq(r, -EOPNOTSUPP, "%d %s", r, wal_error_message(e));
        cr_expect(strstr(wal_error_message(e), "loader-test"), "%s", wal_error_message(e));
        wal_error_free(e);
        wal_config_free(c);
}

Test(plugins, plugin_path_in_a_config_file)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/wal.properties", tmp);
        link_plugin("plugin-good.so", "good.so");
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "# plugins first, then their properties\nplugin.path = %s\n"
                   "backend = tgood-a\ntgood-a.color = green\n", tmp);
        fclose(f);
        wal_config *c = NULL;
        cr_assert_eq(wal_config_new(&c), 0);
        wal_error *e = NULL;
        cr_assert_eq(wal_config_load_file(c, path, &e), 0, "%s", wal_error_message(e));
        cr_expect_str_eq(wal_config_get(c, "backend"), "tgood-a");
        cr_expect_str_eq(wal_config_get(c, "tgood-a.color"), "green");
        wal_config_free(c);
}
