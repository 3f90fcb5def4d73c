/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/settings.c: the effective configuration of a walctl run.
 *
 * Sources are applied lowest precedence first, each overwriting what came
 * before: the properties file (-F FILE or $WALCTL_CONFIG), then the
 * environment, then the -X/-b flags in command-line order.  Defaults are what
 * is left unset.  Every key set is recorded with its source so that
 * `walctl config list` can say where a value came from.
 *
 * The environment variable of a property is WAL_ followed by its key in upper
 * case, every character other than a letter or digit turned into '_':
 * local.dir -> WAL_LOCAL_DIR.  Only the properties known to this build have
 * variables (the core ones and those of the registered backends); pass-through
 * prefixes such as "kafka." cannot be named that way (the dots of the
 * librdkafka key would be lost).  A variable set to the empty string is
 * ignored, so `WAL_BACKEND= walctl ...` means "not set".  A set WAL_*
 * variable that names no property (a typo such as WAL_LOCAL_DIRR, or
 * WAL_KAFKA_BOOTSTRAP_SERVERS) draws a warning, since it changes nothing;
 * the project's own test hooks (WAL_TEST_*, WAL_CRASH_*) are left alone.
 *
 * Properties file syntax (parsed by wal_config_load_file): one KEY=VALUE per
 * line; blanks around the key and the value are dropped; empty lines and
 * lines whose first non-blank is '#' are skipped.  A value keeps any '#' it
 * contains.  Any error names the file, the line and the key.
 *
 * A key that no source sets but the deployment profile ("profile") gives a
 * default for is reported as coming from "profile".
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walctl.h"

void walctl_env_name(const char *key, char *buf, size_t len)
{
        if (!buf || len == 0)
                return;
        size_t n = (size_t)snprintf(buf, len, "WAL_");
        for (const char *p = key ? key : ""; *p && n + 1 < len; p++)
                buf[n++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
        buf[n < len ? n : len - 1] = '\0';
}

const char *walctl_source_name(enum walctl_source s)
{
        switch (s) {
        case WALCTL_SRC_DEFAULT: return "default";
        case WALCTL_SRC_FILE: return "file";
        case WALCTL_SRC_ENV: return "env";
        case WALCTL_SRC_FLAG: return "flag";
        case WALCTL_SRC_PROFILE: return "profile";
        }
        return "unknown";
}

enum walctl_source walctl_source_of(const struct walctl *w, const char *key)
{
        if (!w || !key)
                return WALCTL_SRC_DEFAULT;
        for (size_t i = 0; i < w->n_settings; i++)
                if (strcmp(w->settings[i].key, key) == 0)
                        return w->settings[i].source;
        /* Not set by walctl: the library knows whether the deployment
         * profile supplies it. */
        if (wal_config_source(w->cfg, key) == WAL_CONFIG_SOURCE_PROFILE)
                return WALCTL_SRC_PROFILE;
        return WALCTL_SRC_DEFAULT;
}

/* Remember that @key (copied) was last set from @source.  0 or -ENOMEM. */
static int record(struct walctl *w, const char *key, enum walctl_source source)
{
        for (size_t i = 0; i < w->n_settings; i++) {
                if (strcmp(w->settings[i].key, key) == 0) {
                        w->settings[i].source = source;
                        return 0;
                }
        }
        struct walctl_setting *ns = realloc(w->settings, (w->n_settings + 1) * sizeof(*ns));
        if (!ns)
                return -ENOMEM;
        w->settings = ns;
        char *k = strdup(key);
        if (!k)
                return -ENOMEM;
        w->settings[w->n_settings++] = (struct walctl_setting){ k, source };
        return 0;
}

/* Set @key=@value from @source; on failure print "walctl: @what: why". */
static int set_one(struct walctl *w, const char *what, const char *key, const char *value,
                   enum walctl_source source)
{
        wal_error *err = NULL;
        int r = wal_config_set(w->cfg, key, value, &err);
        if (r < 0) {
                walctl_error(what, "%s", wal_error_message(err));
                wal_error_free(err);
                return r == -ENOMEM ? WALCTL_EXIT_FAILURE : WALCTL_EXIT_USAGE;
        }
        if (record(w, key, source) < 0) {
                walctl_error(what, "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        return 0;
}

/* ---- The properties file ---- */

struct file_copy {
        struct walctl *w;
        const wal_config *from;
        const char *what;
        int rc;
};

static int copy_visit(void *arg, const char *key, const char *value)
{
        struct file_copy *fc = arg;
        /* Only the lines of the file, not what its profile implies. */
        if (wal_config_source(fc->from, key) != WAL_CONFIG_SOURCE_SET)
                return 0;
        fc->rc = set_one(fc->w, fc->what, key, value, WALCTL_SRC_FILE);
        return fc->rc;
}

/* The file is parsed by the library (wal_config_load_file) into a config of
 * its own, whose values are then applied in file order and recorded as
 * coming from the file. */
static int load_file(struct walctl *w, const char *path)
{
        wal_config *fcfg = NULL;
        if (wal_config_new(&fcfg) < 0) {
                walctl_error("config file", "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        wal_error *err = NULL;
        int r = wal_config_load_file(fcfg, path, &err);
        if (r < 0) {
                walctl_error("config file", "%s", wal_error_message(err));
                wal_error_free(err);
                wal_config_free(fcfg);
                return r == -ENOMEM ? WALCTL_EXIT_FAILURE : WALCTL_EXIT_USAGE;
        }
        char what[512];
        snprintf(what, sizeof(what), "config file %s", path);
        struct file_copy fc = { w, fcfg, what, 0 };
        wal_config_foreach_set(fcfg, NULL, copy_visit, &fc);
        wal_config_free(fcfg);
        return fc.rc;
}

/* ---- The environment ---- */

struct env_scan {
        char **keys;                  /* owned copies of the keys whose variable is set */
        size_t n;
        bool oom;
};

static int env_visit(void *arg, const struct wal_property *p, const char *owner,
                     const char *value)
{
        struct env_scan *scan = arg;
        (void)owner;
        (void)value;
        if (p->flags & WAL_PROP_PREFIX)
                return 0;
        char name[256];
        walctl_env_name(p->name, name, sizeof(name));
        const char *v = getenv(name);
        if (!v || !*v)
                return 0;
        char **nk = realloc(scan->keys, (scan->n + 1) * sizeof(*nk));
        char *k = strdup(p->name);
        if (!nk || !k) {
                free(k);
                if (nk)
                        scan->keys = nk;
                scan->oom = true;
                return 1;
        }
        scan->keys = nk;
        scan->keys[scan->n++] = k;
        return 0;
}

extern char **environ;

/* Warn about every set WAL_* variable that is no property's: one whose name
 * is none of @scan's (the properties whose variable env_visit found set). */
static void warn_unknown_env(struct walctl *w, const struct env_scan *scan)
{
        for (char **e = environ; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (strncmp(*e, "WAL_", 4) != 0 || !eq || !eq[1])
                        continue;
                if (strncmp(*e, "WAL_TEST_", 9) == 0 || strncmp(*e, "WAL_CRASH_", 10) == 0)
                        continue;
                size_t len = (size_t)(eq - *e);
                bool known = false;
                for (size_t i = 0; i < scan->n && !known; i++) {
                        char name[256];
                        walctl_env_name(scan->keys[i], name, sizeof(name));
                        known = strlen(name) == len && memcmp(name, *e, len) == 0;
                }
                if (!known)
                        walctl_warn(w, "environment variable %.*s names no property; it is "
                                    "ignored (`walctl config list` shows the properties; "
                                    "pass-through keys such as kafka.* need -X or -F)",
                                    (int)len, *e);
        }
}

static int load_env(struct walctl *w)
{
        /* Collect first: setting values while the table is walked is not needed. */
        struct env_scan scan = { 0 };
        wal_config_foreach_property(w->cfg, env_visit, &scan);
        int rc = 0;
        if (scan.oom) {
                walctl_error("environment", "%s", strerror(ENOMEM));
                rc = WALCTL_EXIT_FAILURE;
        }
        if (!rc)
                warn_unknown_env(w, &scan);
        for (size_t i = 0; i < scan.n && !rc; i++) {
                char name[256], what[300];
                walctl_env_name(scan.keys[i], name, sizeof(name));
                snprintf(what, sizeof(what), "environment variable %s", name);
                rc = set_one(w, what, scan.keys[i], getenv(name), WALCTL_SRC_ENV);
        }
        for (size_t i = 0; i < scan.n; i++)
                free(scan.keys[i]);
        free(scan.keys);
        return rc;
}

/* ---- Flags ---- */

static int load_flags(struct walctl *w)
{
        for (size_t i = 0; i < w->n_sets; i++) {
                const char *pair = w->sets[i];
                char what[512];
                snprintf(what, sizeof(what), "-X %s", pair);
                const char *eq = strchr(pair, '=');
                if (!eq)
                        return walctl_usage_error(what, "expected KEY=VALUE");
                if (eq == pair)
                        return walctl_usage_error(what, "expected KEY=VALUE, the key is empty");
                char *key = strndup(pair, (size_t)(eq - pair));
                if (!key) {
                        walctl_error(what, "%s", strerror(ENOMEM));
                        return WALCTL_EXIT_FAILURE;
                }
                int rc = set_one(w, what, key, eq + 1, WALCTL_SRC_FLAG);
                free(key);
                if (rc)
                        return rc;
        }
        return 0;
}

int walctl_load_config(struct walctl *w)
{
        if (!w)
                return WALCTL_EXIT_FAILURE;
        if (!w->cfg && wal_config_new(&w->cfg) < 0) {
                walctl_error("configuration", "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        int rc = 0;
        if (w->config_file)
                rc = load_file(w, w->config_file);
        if (!rc)
                rc = load_env(w);
        if (!rc)
                rc = load_flags(w);
        return rc;
}

void walctl_done(struct walctl *w)
{
        if (!w)
                return;
        wal_config_free(w->cfg);
        for (size_t i = 0; i < w->n_settings; i++)
                free(w->settings[i].key);
        free(w->settings);
        free(w->sets);
        for (size_t i = 0; i < w->n_owned; i++)
                free(w->owned[i]);
        free(w->owned);
        *w = (struct walctl){ .term = -1 };
}
