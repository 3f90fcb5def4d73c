/* SPDX-License-Identifier: MIT */
/*
 * tests/wal/test-config.c: configuration (wal/wal-config.h, wal/config.c).
 *
 * The core table's defaults and ranges, every value syntax (bool, int,
 * size, duration, enum) with its suffixes and its rejects, the error
 * messages (they must name the key and the value), KEY=VALUE pairs, the
 * order foreach_set keeps, the property listing, copies and NULLs.  The core
 * table has no bool, int, enum or prefix row, so this suite registers a
 * table of its own through the same call the registry uses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-config.h>
#include "wal/config-internal.h"

static const struct wal_property test_table[] = {
        { "ztest.flag", WAL_PROP_BOOL, "false", 0, -1, NULL, 0, "A bool." },
        { "ztest.count", WAL_PROP_INT, "3", -5, 100, NULL, 0, "A bounded int." },
        { "ztest.any", WAL_PROP_INT, NULL, 1, 0, NULL, 0, "An unbounded int, no default." },
        { "ztest.mode", WAL_PROP_ENUM, "safe", 0, -1, "fast|safe|paranoid", 0, "An enum." },
        { "ztest.pass.", WAL_PROP_STRING, NULL, 0, -1, NULL, WAL_PROP_PREFIX,
          "Passed through." },
        { "ztest.secret", WAL_PROP_STRING, NULL, 0, -1, NULL, WAL_PROP_SECRET, "Hidden." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static wal_config *cfg;

static void setup(void)
{
        wal_config_add_table("ztest", test_table);
        cr_assert_eq(wal_config_new(&cfg), 0);
}

static void teardown(void)
{
        wal_config_free(cfg);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Set @key to @value, expecting @code; on failure the message must contain
 * every needle given (NULL-terminated). */
static void expect_set(const char *key, const char *value, int code, ...)
{
        wal_error *err = NULL;
        int r = wal_config_set(cfg, key, value, &err);
        cr_expect_eq(r, code, "set %s=%s: %d (%s)", key, value, r, wal_error_message(err));
        if (code == 0) {
                cr_expect_null(err);
                return;
        }
        cr_expect_eq(wal_error_code(err), code);
        va_list ap;
        va_start(ap, code);
        for (const char *n; (n = va_arg(ap, const char *));)
                cr_expect(strstr(wal_error_message(err), n) != NULL,
                          "message '%s' lacks '%s'", wal_error_message(err), n);
        va_end(ap);
        wal_error_free(err);
}

Test(config, defaults)
{
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "local");
        cr_expect_not(wal_config_is_set(cfg, "backend"));
        uint64_t sz;
        cr_assert_eq(wal_config_get_size(cfg, "message.max_bytes", &sz), 0);
        cr_expect_eq(sz, 8u << 20);
        cr_assert_eq(wal_config_get_size(cfg, "cache.max_bytes", &sz), 0);
        cr_expect_eq(sz, 64u << 20);
        int64_t ms;
        cr_assert_eq(wal_config_get_duration_ms(cfg, "cache.max_age", &ms), 0);
        cr_expect_eq(ms, 30000);
        cr_assert_eq(wal_config_get_duration_ms(cfg, "timetick.interval", &ms), 0);
        cr_expect_eq(ms, 200);
        cr_assert_eq(wal_config_get_duration_ms(cfg, "retry.max_elapsed", &ms), 0);
        cr_expect_eq(ms, 0);
        bool b = true;
        cr_assert_eq(wal_config_get_bool(cfg, "ztest.flag", &b), 0);
        cr_expect_not(b);
        int64_t n;
        cr_assert_eq(wal_config_get_int(cfg, "ztest.count", &n), 0);
        cr_expect_eq(n, 3);
        cr_expect_str_eq(wal_config_get(cfg, "ztest.mode"), "safe");
        /* No value and no default. */
        cr_expect_null(wal_config_get(cfg, "ztest.any"));
        cr_expect_eq(wal_config_get_int(cfg, "ztest.any", &n), -ENOENT);
        /* A NULL config reads the defaults. */
        cr_expect_str_eq(wal_config_get(NULL, "backend"), "local");
        cr_assert_eq(wal_config_get_size(NULL, "message.max_bytes", &sz), 0);
        cr_expect_eq(sz, 8u << 20);
}

Test(config, set_get_unset)
{
        expect_set("backend", "memory", 0);
        cr_expect(wal_config_is_set(cfg, "backend"));
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "memory");
        expect_set("backend", "kafka", 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "kafka");
        cr_expect_eq(wal_config_unset(cfg, "backend"), 0);
        cr_expect_not(wal_config_is_set(cfg, "backend"));
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "local");
        cr_expect_eq(wal_config_unset(cfg, "backend"), -ENOENT);
        cr_expect_eq(wal_config_unset(cfg, "no.such"), -ENOENT);
}

Test(config, unknown_key_names_it)
{
        expect_set("cache.max_bites", "1", -ENOENT, "'cache.max_bites'", NULL);
        expect_set("ztest.pass.", "x", -ENOENT, "ztest.pass.", NULL);
        cr_expect_not(wal_config_is_set(cfg, "cache.max_bites"));
        cr_expect_null(wal_config_get(cfg, "cache.max_bites"));
        cr_expect_null(wal_config_find_property("cache.max_bites"));
        int64_t n;
        cr_expect_eq(wal_config_get_int(cfg, "cache.max_bites", &n), -ENOENT);
}

Test(config, bool_values)
{
        const char *yes[] = { "true", "TRUE", "yes", "Yes", "on", "1" };
        const char *no[] = { "false", "no", "off", "OFF", "0" };
        bool b;
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                expect_set("ztest.flag", yes[i], 0);
                cr_assert_eq(wal_config_get_bool(cfg, "ztest.flag", &b), 0);
                cr_expect(b, "%s", yes[i]);
        }
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
                expect_set("ztest.flag", no[i], 0);
                cr_assert_eq(wal_config_get_bool(cfg, "ztest.flag", &b), 0);
                cr_expect_not(b, "%s", no[i]);
        }
        expect_set("ztest.flag", "maybe", -EINVAL, "ztest.flag", "'maybe'", NULL);
        expect_set("ztest.flag", "", -EINVAL, "ztest.flag", NULL);
        expect_set("ztest.flag", "2", -EINVAL, "ztest.flag", "'2'", NULL);
        expect_set("ztest.flag", " yes", -EINVAL, "ztest.flag", NULL);
        /* A rejected value leaves the previous one. */
        cr_expect_str_eq(wal_config_get(cfg, "ztest.flag"), "0");
}

Test(config, int_values_and_range)
{
        int64_t n;
        expect_set("ztest.count", "-5", 0);
        cr_assert_eq(wal_config_get_int(cfg, "ztest.count", &n), 0);
        cr_expect_eq(n, -5);
        expect_set("ztest.count", "100", 0);
        expect_set("ztest.count", "+7", 0);
        cr_assert_eq(wal_config_get_int(cfg, "ztest.count", &n), 0);
        cr_expect_eq(n, 7);
        expect_set("ztest.count", "-6", -EINVAL, "ztest.count", "-6", "[-5, 100]", NULL);
        expect_set("ztest.count", "101", -EINVAL, "ztest.count", "101", "[-5, 100]", NULL);
        const char *bad[] = { "", "7x", " 7", "7 ", "0x10", "1.5", "abc",
                              "99999999999999999999", "-" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_set("ztest.count", bad[i], -EINVAL, "ztest.count", NULL);
        cr_expect_str_eq(wal_config_get(cfg, "ztest.count"), "+7");
        /* Unbounded (min > max): the whole int64 range. */
        expect_set("ztest.any", "-9223372036854775808", 0);
        expect_set("ztest.any", "9223372036854775807", 0);
        cr_assert_eq(wal_config_get_int(cfg, "ztest.any", &n), 0);
        cr_expect_eq(n, INT64_MAX);
        expect_set("ztest.any", "9223372036854775808", -EINVAL, "ztest.any", NULL);
}

Test(config, size_suffixes)
{
        const struct { const char *text; uint64_t bytes; } ok[] = {
                { "1", 1 }, { "1b", 1 }, { "4k", 4096 }, { "4K", 4096 }, { "4kb", 4096 },
                { "4KiB", 4096 }, { "3m", 3u << 20 }, { "3MB", 3u << 20 },
                { "3mib", 3u << 20 }, { "1g", 1u << 30 }, { "1GiB", 1u << 30 },
                { "1073741824", 1u << 30 },
        };
        uint64_t sz;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                expect_set("message.max_bytes", ok[i].text, 0);
                cr_assert_eq(wal_config_get_size(cfg, "message.max_bytes", &sz), 0);
                cr_expect_eq(sz, ok[i].bytes, "%s", ok[i].text);
        }
        /* message.max_bytes is [1, 1 GiB]. */
        expect_set("message.max_bytes", "0", -EINVAL, "message.max_bytes", "out of range",
                   NULL);
        expect_set("message.max_bytes", "1025m", -EINVAL, "message.max_bytes", "1025m",
                   NULL);
        expect_set("message.max_bytes", "1073741825", -EINVAL, "message.max_bytes", NULL);
        const char *bad[] = { "", "-1", "1t", "1.5m", " 1", "1 m", "k", "m1",
                              "99999999999999999999", "9999999999999g" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_set("message.max_bytes", bad[i], -EINVAL, "message.max_bytes",
                           bad[i], NULL);
        cr_expect_str_eq(wal_config_get(cfg, "message.max_bytes"), "1073741824");
}

Test(config, duration_suffixes)
{
        const struct { const char *text; int64_t ms; } ok[] = {
                { "0", 0 }, { "250", 250 }, { "250ms", 250 }, { "3s", 3000 },
                { "2m", 120000 }, { "1h", 3600000 }, { "24h", 86400000 }, { "5S", 5000 },
        };
        int64_t ms;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                expect_set("cache.max_age", ok[i].text, 0);
                cr_assert_eq(wal_config_get_duration_ms(cfg, "cache.max_age", &ms), 0);
                cr_expect_eq(ms, ok[i].ms, "%s", ok[i].text);
        }
        /* cache.max_age is [0, 24 h]; timetick.interval is [1 ms, 60 s]. */
        expect_set("cache.max_age", "25h", -EINVAL, "cache.max_age", "25h", NULL);
        expect_set("timetick.interval", "0", -EINVAL, "timetick.interval", NULL);
        expect_set("timetick.interval", "61s", -EINVAL, "timetick.interval", "61s", NULL);
        expect_set("timetick.interval", "1m", 0);
        const char *bad[] = { "", "-1s", "1d", "1.5s", "s", "1 s", "1us" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_set("cache.max_age", bad[i], -EINVAL, "cache.max_age", NULL);
        expect_set("retry.max_elapsed", "9223372036854775807", 0);
        expect_set("retry.max_elapsed", "9223372036854775807s", -EINVAL,
                   "retry.max_elapsed", NULL);
}

Test(config, enum_values)
{
        expect_set("ztest.mode", "paranoid", 0);
        expect_set("ztest.mode", "fast", 0);
        const char *bad[] = { "", "Safe", "fas", "fast|safe", "safe ", "|" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_set("ztest.mode", bad[i], -EINVAL, "ztest.mode",
                           "fast|safe|paranoid", NULL);
        cr_expect_str_eq(wal_config_get(cfg, "ztest.mode"), "fast");
}

Test(config, prefix_properties)
{
        expect_set("ztest.pass.linger.ms", "5", 0);
        expect_set("ztest.pass.anything.at.all", "x", 0);
        cr_expect_str_eq(wal_config_get(cfg, "ztest.pass.linger.ms"), "5");
        const struct wal_property *p = wal_config_find_property("ztest.pass.zzz");
        cr_assert_not_null(p);
        cr_expect_str_eq(p->name, "ztest.pass.");
        cr_expect_null(wal_config_find_property("ztest.pass."));
}

Test(config, type_mismatch_in_getters)
{
        int64_t n;
        bool b;
        uint64_t sz;
        cr_expect_eq(wal_config_get_int(cfg, "message.max_bytes", &n), -EINVAL);
        cr_expect_eq(wal_config_get_bool(cfg, "ztest.count", &b), -EINVAL);
        cr_expect_eq(wal_config_get_size(cfg, "cache.max_age", &sz), -EINVAL);
        cr_expect_eq(wal_config_get_duration_ms(cfg, "backend", &n), -EINVAL);
        cr_expect_eq(wal_config_get_int(cfg, "ztest.count", NULL), -EINVAL);
        cr_expect_eq(wal_config_get_int(cfg, NULL, &n), -ENOENT);
}

Test(config, set_pair)
{
        wal_error *err = NULL;
        cr_expect_eq(wal_config_set_pair(cfg, "cache.max_age=5s", &err), 0);
        cr_expect_str_eq(wal_config_get(cfg, "cache.max_age"), "5s");
        /* Only the first '=' splits. */
        cr_expect_eq(wal_config_set_pair(cfg, "backend=a=b", &err), 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "a=b");
        /* An empty value is a value (and a bad one for a duration). */
        cr_expect_eq(wal_config_set_pair(cfg, "cache.max_age=", &err), -EINVAL);
        cr_expect(strstr(wal_error_message(err), "cache.max_age") != NULL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set_pair(cfg, "cache.max_age", &err), -EINVAL);
        cr_expect(strstr(wal_error_message(err), "'cache.max_age' is not KEY=VALUE") != NULL,
                  "%s", wal_error_message(err));
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set_pair(cfg, "=5", &err), -EINVAL);
        cr_expect(strstr(wal_error_message(err), "empty property name") != NULL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set_pair(cfg, "nope=1", &err), -ENOENT);
        cr_expect(strstr(wal_error_message(err), "'nope'") != NULL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set_pair(cfg, NULL, &err), -EINVAL);
        wal_error_free(err);
        cr_expect_eq(wal_config_set_pair(NULL, "backend=x", NULL), -EINVAL);
        cr_expect_eq(wal_config_set_pair(cfg, "backend", NULL), -EINVAL);
}

struct visit {
        char keys[8][64];
        char values[8][64];
        int n;
        int stop_at;
};

static int record(void *arg, const char *key, const char *value)
{
        struct visit *v = arg;
        if (v->n == v->stop_at)
                return 42;
        snprintf(v->keys[v->n], sizeof(v->keys[0]), "%s", key);
        snprintf(v->values[v->n], sizeof(v->values[0]), "%s", value);
        v->n++;
        return 0;
}

Test(config, foreach_set_order_prefix_and_stop)
{
        expect_set("ztest.pass.b", "2", 0);
        expect_set("backend", "memory", 0);
        expect_set("ztest.pass.a", "1", 0);
        expect_set("ztest.pass.b", "22", 0);    /* replacing keeps its place */
        struct visit v = { .stop_at = -1 };
        cr_assert_eq(wal_config_foreach_set(cfg, NULL, record, &v), 0);
        cr_assert_eq(v.n, 3);
        cr_expect_str_eq(v.keys[0], "ztest.pass.b");
        cr_expect_str_eq(v.values[0], "22");
        cr_expect_str_eq(v.keys[1], "backend");
        cr_expect_str_eq(v.keys[2], "ztest.pass.a");

        struct visit w = { .stop_at = -1 };
        cr_assert_eq(wal_config_foreach_set(cfg, "ztest.pass.", record, &w), 0);
        cr_assert_eq(w.n, 2);
        cr_expect_str_eq(w.keys[0], "ztest.pass.b");
        cr_expect_str_eq(w.keys[1], "ztest.pass.a");

        struct visit s = { .stop_at = 1 };
        cr_expect_eq(wal_config_foreach_set(cfg, "", record, &s), 42);
        cr_expect_eq(s.n, 1);

        cr_expect_eq(wal_config_foreach_set(NULL, NULL, record, &v), -EINVAL);
        cr_expect_eq(wal_config_foreach_set(cfg, NULL, NULL, NULL), -EINVAL);
}

struct listing {
        int rows, core_rows, test_rows;
        bool core_first_done;
        bool order_ok;
        char first[64];
        bool saw_backend_memory, saw_prefix_null;
};

static int list_row(void *arg, const struct wal_property *p, const char *owner,
                    const char *value)
{
        struct listing *l = arg;
        if (l->rows == 0)
                snprintf(l->first, sizeof(l->first), "%s/%s", owner, p->name);
        l->rows++;
        if (strcmp(owner, "core") == 0) {
                if (l->core_first_done)
                        l->order_ok = false;
                l->core_rows++;
                if (strcmp(p->name, "backend") == 0 && value && strcmp(value, "memory") == 0)
                        l->saw_backend_memory = true;
        } else {
                l->core_first_done = true;
        }
        if (strcmp(owner, "ztest") == 0) {
                l->test_rows++;
                if (p->flags & WAL_PROP_PREFIX)
                        l->saw_prefix_null = value == NULL;
        }
        return 0;
}

static int stop_first(void *arg, const struct wal_property *p, const char *owner,
                      const char *value)
{
        (void)p;
        (void)owner;
        (void)value;
        ++*(int *)arg;
        return 7;
}

Test(config, foreach_property_lists_core_then_backends)
{
        expect_set("backend", "memory", 0);
        struct listing l = { .order_ok = true };
        cr_assert_eq(wal_config_foreach_property(cfg, list_row, &l), 0);
        cr_expect_str_eq(l.first, "core/backend");
        cr_expect_geq(l.core_rows, 10, "core rows: %d", l.core_rows);
        cr_expect_eq(l.test_rows, 6);
        cr_expect(l.order_ok, "a core row came after a backend row");
        cr_expect(l.saw_backend_memory, "effective value not passed");
        cr_expect(l.saw_prefix_null, "a prefix row has no single value");

        int calls = 0;
        cr_expect_eq(wal_config_foreach_property(cfg, stop_first, &calls), 7);
        cr_expect_eq(calls, 1);
        cr_expect_eq(wal_config_foreach_property(cfg, NULL, NULL), -EINVAL);
        /* A NULL config lists the defaults. */
        struct listing d = { .order_ok = true };
        cr_expect_eq(wal_config_foreach_property(NULL, list_row, &d), 0);
        cr_expect_not(d.saw_backend_memory);
}

Test(config, copy_is_deep_and_ordered)
{
        expect_set("backend", "memory", 0);
        expect_set("ztest.pass.x", "1", 0);
        wal_config *c2 = NULL;
        cr_assert_eq(wal_config_copy(cfg, &c2), 0);
        cr_expect_str_eq(wal_config_get(c2, "backend"), "memory");
        cr_expect(wal_config_is_set(c2, "ztest.pass.x"));
        cr_expect_eq(wal_config_set(c2, "backend", "redis", NULL), 0);
        cr_expect_str_eq(wal_config_get(cfg, "backend"), "memory");
        wal_config_free(cfg);
        cfg = NULL;
        struct visit v = { .stop_at = -1 };
        cr_assert_eq(wal_config_foreach_set(c2, NULL, record, &v), 0);
        cr_assert_eq(v.n, 2);
        cr_expect_str_eq(v.keys[0], "backend");
        cr_expect_str_eq(v.values[0], "redis");
        cr_expect_str_eq(v.keys[1], "ztest.pass.x");
        cfg = c2;
        wal_config *c3 = NULL;
        cr_expect_eq(wal_config_copy(NULL, &c3), -EINVAL);
        cr_expect_eq(wal_config_copy(cfg, NULL), -EINVAL);
}

Test(config, null_arguments)
{
        wal_error *err = NULL;
        cr_expect_eq(wal_config_new(NULL), -EINVAL);
        wal_config_free(NULL);
        cr_expect_eq(wal_config_set(NULL, "backend", "x", &err), -EINVAL);
        cr_expect_eq(wal_error_code(err), -EINVAL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set(cfg, NULL, "x", &err), -EINVAL);
        wal_error_free(err);
        err = NULL;
        cr_expect_eq(wal_config_set(cfg, "", "x", NULL), -EINVAL);
        cr_expect_eq(wal_config_set(cfg, "backend", NULL, &err), -EINVAL);
        cr_expect(strstr(wal_error_message(err), "backend") != NULL);
        wal_error_free(err);
        cr_expect_eq(wal_config_unset(NULL, "backend"), -EINVAL);
        cr_expect_eq(wal_config_unset(cfg, NULL), -EINVAL);
        cr_expect_not(wal_config_is_set(NULL, "backend"));
        cr_expect_not(wal_config_is_set(cfg, NULL));
        cr_expect_null(wal_config_get(cfg, NULL));
        cr_expect_null(wal_config_find_property(NULL));
        cr_expect_str_eq(wal_prop_type_name(WAL_PROP_DURATION), "duration");
        cr_expect_str_eq(wal_prop_type_name((enum wal_prop_type)99), "unknown");
}
