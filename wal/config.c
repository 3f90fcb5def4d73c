/* SPDX-License-Identifier: MIT */
/*
 * wal/config.c: typed configuration properties (wal/wal-config.h).
 *
 * The core table below holds the properties of the WAL itself; each backend
 * adds its own table through the registry (wal_config_add_table).  Values are
 * kept as validated text in the order they were set; typed getters parse the
 * effective text again, which is cheap and keeps one source of truth.
 *
 * Deployment profiles.  The core property "profile" (standalone |
 * distributed) picks a second layer of defaults, as Milvus picks its storage
 * engine per deploy mode: the effective value of a key is the value set on
 * the config, else the chosen profile's default for it, else the table's
 * default (wal_config_source() says which).  The profile tables below are
 * plain key/value text validated like any value (a test sets each one).
 *
 * "plugin.path": setting it loads the plugins of those directories at once
 * (through the registry), so the properties of their backends can be set
 * next, from the same file or command line.
 *
 * wal_config_load_file() reads a properties file (the format walctl -F
 * uses): one KEY = VALUE per line, blanks around key and value dropped,
 * empty lines and lines starting with '#' skipped; the first bad line stops
 * the load with an error naming the file, the line and the key.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <wal/wal-config.h>
#include "wal/config-internal.h"
#include "utility/walu.h"

#define MiB (1024LL * 1024)
#define GiB (1024LL * MiB)

/* ---- The core table ---- */

static const struct wal_property core_properties[] = {
        { "backend", WAL_PROP_STRING, "local", 1, 0, NULL, 0,
          "Backend that stores the log (see `walctl backends`)." },
        { "message.max_bytes", WAL_PROP_SIZE, "8m", 1, GiB, NULL, 0,
          "Largest record accepted by append: payload plus properties, in bytes." },
        { "cache.max_bytes", WAL_PROP_SIZE, "64m", 0, 64 * GiB, NULL, 0,
          "Write-ahead cache: bytes of recent messages kept in memory for tailing readers." },
        { "cache.max_age", WAL_PROP_DURATION, "30s", 0, 24LL * 3600 * 1000, NULL, 0,
          "Write-ahead cache: how long a message stays cached (the newest always stays)." },
        { "retry.backoff_initial", WAL_PROP_DURATION, "10ms", 1, 60000, NULL, 0,
          "First wait before retrying an append that failed with a retriable error." },
        { "retry.backoff_max", WAL_PROP_DURATION, "5s", 1, 600000, NULL, 0,
          "Longest wait between append retries." },
        { "retry.max_elapsed", WAL_PROP_DURATION, "0", 0, INT64_MAX, NULL, 0,
          "Give up retrying an append after this long (0: until closed, fenced or cancelled)." },
        { "timetick.interval", WAL_PROP_DURATION, "200ms", 1, 60000, NULL, 0,
          "Period of the time-tick messages that let idle readers advance." },
        { "txn.keepalive", WAL_PROP_DURATION, "10s", 1, 24LL * 3600 * 1000, NULL, 0,
          "Default keepalive of a transaction: it expires if idle this long." },
        { "append.timeout", WAL_PROP_DURATION, "0", 0, INT64_MAX, NULL, 0,
          "Blocking append gives up after this long (0: wait until done or closed)." },
        { "profile", WAL_PROP_ENUM, NULL, 1, 0, "standalone|distributed", 0,
          "Deployment profile: picks the default backend and its defaults (standalone: "
          "local; distributed: kafka); every property set explicitly still wins." },
        { "plugin.path", WAL_PROP_STRING, NULL, 1, 0, NULL, 0,
          "Colon-separated directories (or .so files) of backend plugins, loaded when "
          "this is set (as well as those of $WAL_PLUGIN_PATH)." },
        { NULL, 0, NULL, 0, 0, NULL, 0, NULL },
};

/* ---- Deployment profiles ---- */

struct profile_default {
        const char *key;
        const char *value;
};

/* standalone: one machine, the embedded local log. */
static const struct profile_default profile_standalone[] = {
        { "backend", "local" },
        { NULL, NULL },
};

/* distributed: Kafka, tuned for a networked broker rather than a disk. */
static const struct profile_default profile_distributed[] = {
        { "backend", "kafka" },
        { "cache.max_bytes", "256m" },          /* readers lag more over the network */
        { "kafkawal.open_timeout", "30s" },     /* brokers may be slow to elect a leader */
        { "kafkawal.close_timeout", "30s" },
        { "kafka.linger.ms", "5" },             /* batch produce requests */
        { "kafka.socket.keepalive.enable", "true" },
        { NULL, NULL },
};

static const struct {
        const char *name;
        const struct profile_default *defaults;
} profiles[] = {
        { "standalone", profile_standalone },
        { "distributed", profile_distributed },
};

const char *wal_config_profile_default(const char *profile, const char *key)
{
        if (!profile || !key)
                return NULL;
        for (size_t i = 0; i < WALU_ARRAY_SIZE(profiles); i++) {
                if (strcmp(profiles[i].name, profile) != 0)
                        continue;
                for (const struct profile_default *d = profiles[i].defaults; d->key; d++)
                        if (strcmp(d->key, key) == 0)
                                return d->value;
        }
        return NULL;
}

/* ---- Registered tables ---- */

struct table_entry {
        const char *owner;
        const struct wal_property *table;
};

static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;
static struct table_entry *tables;
static size_t n_tables, cap_tables;

void wal_config_add_table(const char *owner, const struct wal_property *table)
{
        if (!owner || !table)
                return;
        pthread_mutex_lock(&tables_lock);
        for (size_t i = 0; i < n_tables; i++) {
                if (tables[i].table == table) {
                        pthread_mutex_unlock(&tables_lock);
                        return;
                }
        }
        if (n_tables == cap_tables) {
                size_t cap = cap_tables ? cap_tables * 2 : 8;
                struct table_entry *nt = realloc(tables, cap * sizeof(*nt));
                if (!nt) {
                        pthread_mutex_unlock(&tables_lock);
                        return;
                }
                tables = nt;
                cap_tables = cap;
        }
        /* Keep tables sorted by owner so listings are stable. */
        size_t at = n_tables;
        while (at > 0 && strcmp(tables[at - 1].owner, owner) > 0)
                at--;
        memmove(&tables[at + 1], &tables[at], (n_tables - at) * sizeof(*tables));
        tables[at] = (struct table_entry){ owner, table };
        n_tables++;
        pthread_mutex_unlock(&tables_lock);
}

static void ensure_tables(void)
{
        if (wal_registry_ensure_loaded)
                wal_registry_ensure_loaded();
}

static const struct wal_property *find_in(const struct wal_property *t, const char *key,
                                          bool prefix)
{
        for (; t->name; t++) {
                if (prefix) {
                        if ((t->flags & WAL_PROP_PREFIX) &&
                            strncmp(key, t->name, strlen(t->name)) == 0 &&
                            key[strlen(t->name)] != '\0')
                                return t;
                } else if (strcmp(t->name, key) == 0 && !(t->flags & WAL_PROP_PREFIX)) {
                        return t;
                }
        }
        return NULL;
}

const struct wal_property *wal_config_find_property(const char *key)
{
        if (!key)
                return NULL;
        ensure_tables();
        for (int pass = 0; pass < 2; pass++) {
                bool prefix = pass == 1;
                const struct wal_property *p = find_in(core_properties, key, prefix);
                if (p)
                        return p;
                pthread_mutex_lock(&tables_lock);
                for (size_t i = 0; i < n_tables && !p; i++)
                        p = find_in(tables[i].table, key, prefix);
                pthread_mutex_unlock(&tables_lock);
                if (p)
                        return p;
        }
        return NULL;
}

const char *wal_prop_type_name(enum wal_prop_type type)
{
        switch (type) {
        case WAL_PROP_STRING: return "string";
        case WAL_PROP_INT: return "int";
        case WAL_PROP_BOOL: return "bool";
        case WAL_PROP_SIZE: return "size";
        case WAL_PROP_DURATION: return "duration";
        case WAL_PROP_ENUM: return "enum";
        }
        return "unknown";
}

/* ---- Value parsing ---- */

static int parse_int(const char *s, int64_t *ret)
{
        if (!*s || isspace((unsigned char)*s))
                return -EINVAL;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };
        for (size_t i = 0; i < WALU_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* A non-negative decimal number followed by a unit from @units (each with its
 * multiplier); an empty unit is allowed when @units has one of length 0. */
struct unit {
        const char *suffix;
        int64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, size_t n_units,
                            int64_t *ret)
{
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        for (size_t i = 0; i < n_units; i++) {
                if (strcasecmp(end, units[i].suffix) == 0) {
                        if (v > (unsigned long long)(INT64_MAX / units[i].mult))
                                return -EINVAL;
                        *ret = (int64_t)v * units[i].mult;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_size(const char *s, int64_t *ret)
{
        static const struct unit units[] = {
                { "", 1 }, { "b", 1 },
                { "k", 1024 }, { "kb", 1024 }, { "kib", 1024 },
                { "m", MiB }, { "mb", MiB }, { "mib", MiB },
                { "g", GiB }, { "gb", GiB }, { "gib", GiB },
        };
        return parse_with_units(s, units, WALU_ARRAY_SIZE(units), ret);
}

static int parse_duration(const char *s, int64_t *ret)
{
        static const struct unit units[] = {
                { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
        };
        return parse_with_units(s, units, WALU_ARRAY_SIZE(units), ret);
}

static bool enum_has(const char *choices, const char *v)
{
        size_t n = strlen(v);
        for (const char *p = choices; p && *p;) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                if (len == n && strncmp(p, v, n) == 0)
                        return true;
                p = bar ? bar + 1 : NULL;
        }
        return false;
}

static bool bounded(const struct wal_property *p)
{
        return p->min <= p->max;
}

/* Validate @value for @p; on failure report an error naming @key. */
static int validate(const struct wal_property *p, const char *key, const char *value,
                    wal_error **reterr)
{
        int64_t v = 0;
        bool b;
        int r = 0;
        const char *what = NULL;
        switch (p->type) {
        case WAL_PROP_STRING:
                return 0;
        case WAL_PROP_BOOL:
                if (parse_bool(value, &b) < 0)
                        return wal_error_set(reterr, -EINVAL, 0,
                                             "property %s: '%s' is not a bool "
                                             "(true/false, yes/no, on/off, 1/0)", key, value);
                return 0;
        case WAL_PROP_ENUM:
                if (!enum_has(p->choices, value))
                        return wal_error_set(reterr, -EINVAL, 0,
                                             "property %s: '%s' is not one of %s", key, value,
                                             p->choices);
                return 0;
        case WAL_PROP_INT:
                r = parse_int(value, &v);
                what = "an integer";
                break;
        case WAL_PROP_SIZE:
                r = parse_size(value, &v);
                what = "a size (bytes, or with k/m/g)";
                break;
        case WAL_PROP_DURATION:
                r = parse_duration(value, &v);
                what = "a duration (ms, or with ms/s/m/h)";
                break;
        }
        if (r < 0)
                return wal_error_set(reterr, -EINVAL, 0, "property %s: '%s' is not %s", key,
                                     value, what);
        if (bounded(p) && (v < p->min || v > p->max))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "property %s: %s is out of range [%" PRId64 ", %" PRId64 "]",
                                     key, value, p->min, p->max);
        return 0;
}

/* ---- The config object ---- */

struct kv {
        char *key;
        char *value;
};

struct wal_config {
        struct kv *items;
        size_t n, cap;
};

int wal_config_new(wal_config **ret)
{
        if (!ret)
                return -EINVAL;
        wal_config *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

void wal_config_free(wal_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++) {
                free(c->items[i].key);
                free(c->items[i].value);
        }
        free(c->items);
        free(c);
}

static struct kv *find_kv(const wal_config *c, const char *key)
{
        for (size_t i = 0; i < c->n; i++)
                if (strcmp(c->items[i].key, key) == 0)
                        return &c->items[i];
        return NULL;
}

/* Store without validation. */
static int store(wal_config *c, const char *key, const char *value)
{
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        struct kv *kv = find_kv(c, key);
        if (kv) {
                free(kv->value);
                kv->value = v;
                return 0;
        }
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 8;
                struct kv *ni = realloc(c->items, cap * sizeof(*ni));
                if (!ni) {
                        free(v);
                        return -ENOMEM;
                }
                c->items = ni;
                c->cap = cap;
        }
        char *k = strdup(key);
        if (!k) {
                free(v);
                return -ENOMEM;
        }
        c->items[c->n++] = (struct kv){ k, v };
        return 0;
}

int wal_config_copy(const wal_config *c, wal_config **ret)
{
        if (!c || !ret)
                return -EINVAL;
        wal_config *n;
        int r = wal_config_new(&n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n; i++) {
                r = store(n, c->items[i].key, c->items[i].value);
                if (r < 0) {
                        wal_config_free(n);
                        return r;
                }
        }
        *ret = n;
        return 0;
}

int wal_config_set(wal_config *c, const char *key, const char *value, wal_error **reterr)
{
        if (!c)
                return wal_error_set(reterr, -EINVAL, 0, "no configuration given");
        if (!key || !*key)
                return wal_error_set(reterr, -EINVAL, 0, "empty property name");
        if (!value)
                return wal_error_set(reterr, -EINVAL, 0, "property %s: no value", key);
        const struct wal_property *p = wal_config_find_property(key);
        if (!p)
                return wal_error_set(reterr, -ENOENT, 0,
                                     "unknown property '%s' (`walctl config list` shows them)",
                                     key);
        int r = validate(p, key, value, reterr);
        if (r < 0)
                return r;
        r = store(c, key, value);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "property %s: out of memory", key);
        if (strcmp(key, "plugin.path") == 0 && wal_registry_config_plugin_path)
                wal_registry_config_plugin_path(value);
        return 0;
}

int wal_config_set_pair(wal_config *c, const char *pair, wal_error **reterr)
{
        if (!pair)
                return wal_error_set(reterr, -EINVAL, 0, "no KEY=VALUE given");
        const char *eq = strchr(pair, '=');
        if (!eq)
                return wal_error_set(reterr, -EINVAL, 0, "'%s' is not KEY=VALUE", pair);
        char *key = strndup(pair, (size_t)(eq - pair));
        if (!key)
                return wal_error_set(reterr, -ENOMEM, 0, "out of memory");
        int r = wal_config_set(c, key, eq + 1, reterr);
        free(key);
        return r;
}

int wal_config_unset(wal_config *c, const char *key)
{
        if (!c || !key)
                return -EINVAL;
        struct kv *kv = find_kv(c, key);
        if (!kv)
                return -ENOENT;
        free(kv->key);
        free(kv->value);
        size_t i = (size_t)(kv - c->items);
        memmove(kv, kv + 1, (c->n - i - 1) * sizeof(*kv));
        c->n--;
        return 0;
}

bool wal_config_is_set(const wal_config *c, const char *key)
{
        return c && key && find_kv(c, key);
}

/* The profile default of @key under the profile set on @c, or NULL. */
static const char *profile_value(const wal_config *c, const char *key)
{
        if (!c || strcmp(key, "profile") == 0)
                return NULL;
        struct kv *pk = find_kv(c, "profile");
        return pk ? wal_config_profile_default(pk->value, key) : NULL;
}

const char *wal_config_get(const wal_config *c, const char *key)
{
        if (!key)
                return NULL;
        if (c) {
                struct kv *kv = find_kv(c, key);
                if (kv)
                        return kv->value;
        }
        const struct wal_property *p = wal_config_find_property(key);
        if (!p)
                return NULL;
        const char *pv = profile_value(c, key);
        return pv ? pv : p->def;
}

enum wal_config_source wal_config_source(const wal_config *c, const char *key)
{
        if (!key)
                return WAL_CONFIG_SOURCE_NONE;
        if (c && find_kv(c, key))
                return WAL_CONFIG_SOURCE_SET;
        const struct wal_property *p = wal_config_find_property(key);
        if (!p)
                return WAL_CONFIG_SOURCE_NONE;
        if (profile_value(c, key))
                return WAL_CONFIG_SOURCE_PROFILE;
        return p->def ? WAL_CONFIG_SOURCE_DEFAULT : WAL_CONFIG_SOURCE_NONE;
}

static int get_typed(const wal_config *c, const char *key, enum wal_prop_type type,
                     const char **ret)
{
        const struct wal_property *p = wal_config_find_property(key);
        if (!p)
                return -ENOENT;
        if (p->type != type)
                return -EINVAL;
        const char *v = wal_config_get(c, key);
        if (!v)
                return -ENOENT;
        *ret = v;
        return 0;
}

int wal_config_get_int(const wal_config *c, const char *key, int64_t *ret)
{
        const char *v;
        int r = get_typed(c, key, WAL_PROP_INT, &v);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        return parse_int(v, ret);
}

int wal_config_get_bool(const wal_config *c, const char *key, bool *ret)
{
        const char *v;
        int r = get_typed(c, key, WAL_PROP_BOOL, &v);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        return parse_bool(v, ret);
}

int wal_config_get_size(const wal_config *c, const char *key, uint64_t *ret)
{
        const char *v;
        int64_t n;
        int r = get_typed(c, key, WAL_PROP_SIZE, &v);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        r = parse_size(v, &n);
        if (r < 0)
                return r;
        *ret = (uint64_t)n;
        return 0;
}

int wal_config_get_duration_ms(const wal_config *c, const char *key, int64_t *ret)
{
        const char *v;
        int r = get_typed(c, key, WAL_PROP_DURATION, &v);
        if (r < 0 || !ret)
                return r < 0 ? r : -EINVAL;
        return parse_duration(v, ret);
}

int wal_config_foreach_set(const wal_config *c, const char *prefix, wal_config_visit_fn *fn,
                           void *arg)
{
        if (!c || !fn)
                return -EINVAL;
        size_t plen = prefix ? strlen(prefix) : 0;
        for (size_t i = 0; i < c->n; i++) {
                if (plen && strncmp(c->items[i].key, prefix, plen) != 0)
                        continue;
                int r = fn(arg, c->items[i].key, c->items[i].value);
                if (r)
                        return r;
        }
        /* Then the profile's defaults for pass-through keys (kafka.*) that
         * were not set: they reach the backend like set ones. */
        struct kv *pk = find_kv(c, "profile");
        for (size_t i = 0; pk && i < WALU_ARRAY_SIZE(profiles); i++) {
                if (strcmp(profiles[i].name, pk->value) != 0)
                        continue;
                for (const struct profile_default *d = profiles[i].defaults; d->key; d++) {
                        if (plen && strncmp(d->key, prefix, plen) != 0)
                                continue;
                        if (find_kv(c, d->key))
                                continue;
                        const struct wal_property *p = wal_config_find_property(d->key);
                        if (!p || !(p->flags & WAL_PROP_PREFIX))
                                continue;
                        int r = fn(arg, d->key, d->value);
                        if (r)
                                return r;
                }
        }
        return 0;
}

int wal_config_foreach_property(const wal_config *c, wal_config_property_fn *fn, void *arg)
{
        if (!fn)
                return -EINVAL;
        ensure_tables();
        for (const struct wal_property *p = core_properties; p->name; p++) {
                int r = fn(arg, p, "core", wal_config_get(c, p->name));
                if (r)
                        return r;
        }
        /* Tables are only ever added, so a snapshot of the count is safe. */
        pthread_mutex_lock(&tables_lock);
        size_t n = n_tables;
        struct table_entry *snap = malloc((n ? n : 1) * sizeof(*snap));
        if (snap)
                memcpy(snap, tables, n * sizeof(*snap));
        pthread_mutex_unlock(&tables_lock);
        if (!snap)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; i < n && !r; i++)
                for (const struct wal_property *p = snap[i].table; p->name && !r; p++)
                        r = fn(arg, p, snap[i].owner,
                               (p->flags & WAL_PROP_PREFIX) ? NULL : wal_config_get(c, p->name));
        free(snap);
        return r;
}

/* ---- Properties files ---- */

static char *trim(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

int wal_config_load_file(wal_config *c, const char *path, wal_error **reterr)
{
        if (!c || !path)
                return wal_error_set(reterr, -EINVAL, 0, "wal_config_load_file: %s is NULL",
                                     c ? "path" : "config");
        FILE *f = fopen(path, "re");
        if (!f) {
                int e = errno;
                return wal_error_set(reterr, -e, 0, "config file %s: %s", path, strerror(e));
        }
        char *line = NULL;
        size_t cap = 0;
        unsigned long lineno = 0;
        int r = 0;
        while (getline(&line, &cap, f) >= 0) {
                lineno++;
                char *s = trim(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "%s:%lu: expected KEY = VALUE, got '%s'", path,
                                          lineno, s);
                        break;
                }
                *eq = '\0';
                char *key = trim(s);
                char *value = trim(eq + 1);
                if (!*key) {
                        r = wal_error_set(reterr, -EINVAL, 0,
                                          "%s:%lu: expected KEY = VALUE, the key is empty",
                                          path, lineno);
                        break;
                }
                wal_error *e = NULL;
                r = wal_config_set(c, key, value, &e);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "%s:%lu: key %s: %s", path, lineno, key,
                                      wal_error_message(e));
                        wal_error_free(e);
                        break;
                }
        }
        if (r == 0 && ferror(f)) {
                int e = errno ? errno : EIO;
                r = wal_error_set(reterr, -e, 0, "config file %s: read error: %s", path,
                                  strerror(e));
        }
        free(line);
        fclose(f);
        return r;
}
