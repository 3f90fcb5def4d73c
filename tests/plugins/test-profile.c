/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/test-profile.c: deployment profiles and properties files
 * (wal/wal-config.h).
 *
 * Precedence of an effective value: set on the config > the default of the
 * chosen profile > the table's default, with wal_config_source() naming the
 * layer.  Properties files: every line applies in order; the first bad line
 * stops the load with an error naming file, line and key.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wal/wal.h>
#include "wal-build-config.h"

static wal_config *cfg;

static void setup(void)
{
        cr_assert_eq(wal_config_new(&cfg), 0);
}

static void teardown(void)
{
        wal_config_free(cfg);
}

TestSuite(profile, .init = setup, .fini = teardown);

Test(profile, unset_profile_leaves_table_defaults)
{
        cr_expect_null(wal_config_get(cfg, "profile"));
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "local");
        cr_expect_eq(wal_config_source(cfg, "backend"), WAL_CONFIG_SOURCE_DEFAULT);
        cr_expect_eq(wal_config_source(cfg, "profile"), WAL_CONFIG_SOURCE_NONE);
        cr_expect_eq(wal_config_source(cfg, "no.such.key"), WAL_CONFIG_SOURCE_NONE);
        cr_expect_eq(wal_config_source(NULL, "cache.max_bytes"), WAL_CONFIG_SOURCE_DEFAULT);
}

Test(profile, explicit_beats_profile_beats_default)
{
        cr_assert_eq(wal_config_set(cfg, "profile", "distributed", NULL), 0);
        /* profile > default */
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "kafka");
        cr_expect_eq(wal_config_source(cfg, "backend"), WAL_CONFIG_SOURCE_PROFILE);
        uint64_t sz = 0;
        cr_assert_eq(wal_config_get_size(cfg, "cache.max_bytes", &sz), 0);
        cr_expect_eq(sz, 256u * 1024 * 1024);
        cr_expect_eq(wal_config_source(cfg, "cache.max_bytes"), WAL_CONFIG_SOURCE_PROFILE);
        /* a key the profile does not touch keeps the table's default */
        cr_expect_str_eq(wal_config_get(cfg, "timetick.interval"), "200ms");
        cr_expect_eq(wal_config_source(cfg, "timetick.interval"), WAL_CONFIG_SOURCE_DEFAULT);
        /* explicit > profile, property by property */
        cr_assert_eq(wal_config_set(cfg, "backend", "memory", NULL), 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "memory");
        cr_expect_eq(wal_config_source(cfg, "backend"), WAL_CONFIG_SOURCE_SET);
        cr_expect_eq(wal_config_source(cfg, "cache.max_bytes"), WAL_CONFIG_SOURCE_PROFILE);
        /* and back: unsetting the explicit value uncovers the profile's */
        cr_assert_eq(wal_config_unset(cfg, "backend"), 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "kafka");
        /* switching the profile switches the layer */
        cr_assert_eq(wal_config_set(cfg, "profile", "standalone", NULL), 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "local");
        cr_expect_eq(wal_config_source(cfg, "backend"), WAL_CONFIG_SOURCE_PROFILE);
        cr_expect_eq(wal_config_source(cfg, "cache.max_bytes"), WAL_CONFIG_SOURCE_DEFAULT);
}

Test(profile, bad_profile_is_refused)
{
        wal_error *e = NULL;
        cr_expect_eq(wal_config_set(cfg, "profile", "cluster", &e), -EINVAL);
        cr_expect(strstr(wal_error_message(e), "standalone|distributed"), "%s",
                  wal_error_message(e));
        wal_error_free(e);
        e = NULL;
}

/* Every profile default is a valid value of its property (where the property
 * exists in this build), so a profile can never produce a value that
 * wal_config_set would refuse. */
Test(profile, every_profile_default_is_valid)
{
        static const char *const keys[] = {
                "backend", "cache.max_bytes", "kafkawal.open_timeout",
                "kafkawal.close_timeout", "kafka.linger.ms", "kafka.socket.keepalive.enable",
        };
        static const char *const profiles[] = { "standalone", "distributed" };
        int checked = 0;
        for (size_t p = 0; p < 2; p++)
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                        const char *v = wal_config_profile_default(profiles[p], keys[k]);
                        if (!v || !wal_config_find_property(keys[k]))
                                continue;
                        wal_error *e = NULL;
                        cr_expect_eq(wal_config_set(cfg, keys[k], v, &e), 0, "%s %s=%s: %s",
                                     profiles[p], keys[k], v, wal_error_message(e));
                        wal_error_free(e);
        e = NULL;
                        checked++;
                }
        cr_expect_geq(checked, 3);
        cr_expect_str_eq(wal_config_profile_default("distributed", "backend"), "kafka");
        cr_expect_str_eq(wal_config_profile_default("standalone", "backend"), "local");
        cr_expect_null(wal_config_profile_default("standalone", "cache.max_bytes"));
        cr_expect_null(wal_config_profile_default("nope", "backend"));
}

static int collect(void *arg, const char *key, const char *value)
{
        char *buf = arg;
        strcat(buf, key);
        strcat(buf, "=");
        strcat(buf, value);
        strcat(buf, ";");
        return 0;
}

#if HAVE_KAFKA
/* Pass-through keys (kafka.*) from the profile reach the backend with the
 * ones set, and a set one wins. */
Test(profile, profile_pass_through_keys_are_visited)
{
        cr_assert_eq(wal_config_set(cfg, "profile", "distributed", NULL), 0);
        cr_assert_eq(wal_config_set(cfg, "kafka.linger.ms", "20", NULL), 0);
        char buf[512] = "";
        cr_assert_eq(wal_config_foreach_set(cfg, "kafka.", collect, buf), 0);
        cr_expect_str_eq(buf, "kafka.linger.ms=20;kafka.socket.keepalive.enable=true;");
        cr_expect_eq(wal_config_source(cfg, "kafka.socket.keepalive.enable"),
                     WAL_CONFIG_SOURCE_PROFILE);
        cr_expect_eq(wal_config_source(cfg, "kafka.linger.ms"), WAL_CONFIG_SOURCE_SET);
}
#endif

/* ---- Properties files ---- */

static char *write_tmp(const char *text)
{
        char *path = strdup("/tmp/wal-props-XXXXXX");
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

Test(profile, file_sets_backend_and_properties)
{
        char *path = write_tmp("# a comment\n\n  backend = memory  \n"
                               "profile=distributed\n"
                               "cache.max_bytes = 1m\n"
                               "txn.keepalive=5s # a value keeps its '#'\n");
        wal_error *e = NULL;
        int r = wal_config_load_file(cfg, path, &e);
        /* The last line's value is "5s # a value..." which is not a duration. */
        cr_assert_eq(r, -EINVAL, "%s", wal_error_message(e));
        char where[256];
        snprintf(where, sizeof(where), "%s:6: key txn.keepalive", path);
        cr_expect(strstr(wal_error_message(e), where), "%s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        /* Lines before the bad one stay set. */
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "memory");
        cr_expect_eq(wal_config_source(cfg, "backend"), WAL_CONFIG_SOURCE_SET);
        cr_expect_str_eq(wal_config_get(cfg, "cache.max_bytes"), "1m");
        unlink(path);
        free(path);

        path = write_tmp("backend = memory\nprofile = distributed\n");
        cr_assert_eq(wal_config_load_file(cfg, path, &e), 0, "%s", wal_error_message(e));
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "memory");  /* explicit > profile */
        unlink(path);
        free(path);
}

Test(profile, file_errors_name_file_line_and_key)
{
        char *path = write_tmp("cache.max_bytes = 1m\n# x\nnope.key = 3\n");
        wal_error *e = NULL;
        cr_expect_eq(wal_config_load_file(cfg, path, &e), -ENOENT);
        char where[256];
        snprintf(where, sizeof(where), "%s:3: key nope.key", path);
        cr_expect(strstr(wal_error_message(e), where), "%s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        unlink(path);
        free(path);

        path = write_tmp("message.max_bytes = lots\n");
        cr_expect_eq(wal_config_load_file(cfg, path, &e), -EINVAL);
        cr_expect(strstr(wal_error_message(e), ":1: key message.max_bytes") &&
                  strstr(wal_error_message(e), "'lots'"), "%s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        unlink(path);
        free(path);

        path = write_tmp("\n\njust words\n");
        cr_expect_eq(wal_config_load_file(cfg, path, &e), -EINVAL);
        snprintf(where, sizeof(where), "%s:3: expected KEY = VALUE", path);
        cr_expect(strstr(wal_error_message(e), where), "%s", wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        unlink(path);
        free(path);

        cr_expect_eq(wal_config_load_file(cfg, "/nonexistent/wal.properties", &e), -ENOENT);
        cr_expect(strstr(wal_error_message(e), "/nonexistent/wal.properties"), "%s",
                  wal_error_message(e));
        wal_error_free(e);
        e = NULL;
        cr_expect_eq(wal_config_load_file(NULL, "/x", NULL), -EINVAL);
}
