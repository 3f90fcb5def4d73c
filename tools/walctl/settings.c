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
 * ignored, so `WAL_BACKEND= walctl ...` means "not set".
 *
 * Properties file syntax: one KEY=VALUE per line; blanks around the key and
 * the value are dropped; empty lines and lines whose first non-blank is '#'
 * are skipped.  A value keeps any '#' it contains.  Any error names the
 * file, the line and the key.
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

static char *trim(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* ---- The properties file ---- */

static int load_file(struct walctl *w, const char *path)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                int e = errno;
                char what[512];
                snprintf(what, sizeof(what), "config file %s", path);
                walctl_error(what, "%s", strerror(e));
                return WALCTL_EXIT_USAGE;
        }
        char *line = NULL;
        size_t cap = 0;
        unsigned long lineno = 0;
        int rc = 0;
        char what[512];
        while (getline(&line, &cap, f) >= 0) {
                lineno++;
                snprintf(what, sizeof(what), "%s:%lu", path, lineno);
                char *s = trim(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        walctl_error(what, "expected KEY=VALUE, got '%s'", s);
                        rc = WALCTL_EXIT_USAGE;
                        break;
                }
                *eq = '\0';
                char *key = trim(s);
                char *value = trim(eq + 1);
                if (!*key) {
                        walctl_error(what, "expected KEY=VALUE, the key is empty");
                        rc = WALCTL_EXIT_USAGE;
                        break;
                }
                rc = set_one(w, what, key, value, WALCTL_SRC_FILE);
                if (rc)
                        break;
        }
        if (!rc && ferror(f)) {
                walctl_error(path, "read error: %s", strerror(errno));
                rc = WALCTL_EXIT_USAGE;
        }
        free(line);
        fclose(f);
        return rc;
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
