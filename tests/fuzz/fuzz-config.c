/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-config.c: fuzz target for configuration values
 * (wal/config.c), which parses text from flags, the environment and files.
 *
 * The first input byte picks a property (core rows plus a table of bool,
 * int and enum rows registered here, the same way the registry registers a
 * backend's); the rest, cut at its first NUL, is the value.  Setting must
 * either fail with -EINVAL and a message naming the key, or succeed, and
 * then the typed getter must read a value within the property's bounds.
 * The same text as a KEY=VALUE pair must give the same verdict.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-config.h>
#include "wal/config-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct wal_property fuzz_table[] = {
        { "zfuzz.flag", WAL_PROP_BOOL, "false", 0, -1, NULL, 0, "bool" },
        { "zfuzz.count", WAL_PROP_INT, "3", -5, 100, NULL, 0, "bounded int" },
        { "zfuzz.any", WAL_PROP_INT, NULL, 1, 0, NULL, 0, "unbounded int" },
        { "zfuzz.mode", WAL_PROP_ENUM, "safe", 0, -1, "fast|safe|paranoid", 0, "enum" },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

static const char *const keys[] = {
        "message.max_bytes", "cache.max_bytes", "cache.max_age", "retry.max_elapsed",
        "timetick.interval", "backend", "zfuzz.flag", "zfuzz.count", "zfuzz.any",
        "zfuzz.mode",
};

static void fail(const char *what, const char *key, const char *value)
{
        fprintf(stderr, "fuzz-config: %s: %s = '%s'\n", what, key, value);
        abort();
}

static void check_typed(const wal_config *c, const struct wal_property *p, const char *key,
                        const char *value)
{
        int64_t v = 0;
        int r = 0;
        bool b;
        uint64_t sz;
        switch (p->type) {
        case WAL_PROP_INT:
                r = wal_config_get_int(c, key, &v);
                break;
        case WAL_PROP_SIZE:
                r = wal_config_get_size(c, key, &sz);
                if (r == 0 && sz > INT64_MAX)
                        fail("size beyond int64", key, value);
                v = r == 0 ? (int64_t)sz : 0;
                break;
        case WAL_PROP_DURATION:
                r = wal_config_get_duration_ms(c, key, &v);
                break;
        case WAL_PROP_BOOL:
                r = wal_config_get_bool(c, key, &b);
                break;
        default:
                if (strcmp(wal_config_get(c, key), value) != 0)
                        fail("stored text differs", key, value);
                return;
        }
        if (r < 0)
                fail("accepted value does not read back", key, value);
        if (p->type != WAL_PROP_BOOL && p->min <= p->max && (v < p->min || v > p->max))
                fail("accepted value out of range", key, value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        wal_config_add_table("zfuzz", fuzz_table);
        if (size == 0)
                return 0;
        const char *key = keys[data[0] % (sizeof(keys) / sizeof(keys[0]))];
        char *value = malloc(size);
        char *pair = malloc(strlen(key) + size + 1);
        wal_config *c = NULL;
        if (!value || !pair || wal_config_new(&c) < 0)
                goto out;
        memcpy(value, data + 1, size - 1);
        value[size - 1] = '\0';

        const struct wal_property *p = wal_config_find_property(key);
        if (!p)
                fail("property missing", key, value);
        wal_error *err = NULL;
        int r = wal_config_set(c, key, value, &err);
        if (r == 0) {
                if (err)
                        fail("error object on success", key, value);
                check_typed(c, p, key, value);
        } else {
                if (r != -EINVAL || wal_error_code(err) != r)
                        fail("unexpected error code", key, value);
                if (!strstr(wal_error_message(err), key))
                        fail("message does not name the key", key, value);
                if (wal_config_is_set(c, key))
                        fail("rejected value was stored", key, value);
        }
        wal_error_free(err);

        sprintf(pair, "%s=%s", key, value);
        wal_config *c2 = NULL;
        if (wal_config_new(&c2) == 0) {
                int r2 = wal_config_set_pair(c2, pair, NULL);
                if (r2 != r)
                        fail("KEY=VALUE verdict differs", key, value);
                wal_config_free(c2);
        }
out:
        wal_config_free(c);
        free(pair);
        free(value);
        return 0;
}
