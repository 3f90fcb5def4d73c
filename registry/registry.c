/* SPDX-License-Identifier: MIT */
/*
 * registry/registry.c: backend name -> builder (wal/wal-registry.h).
 *
 * At first use the builders placed in the "wal_backends" linker section by
 * WAL_REGISTER_BACKEND() are collected, checked, sorted by name (link order
 * is not guaranteed) and de-duplicated: a second builder with a taken name is
 * refused and recorded as a problem, never a crash.  wal_registry_add() adds
 * more at run time.  Entries are never removed, so a pointer handed out stays
 * valid; the array itself is only read and written under the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-log.h>
#include <wal/wal-registry.h>
#include "wal/config-internal.h"
#include "utility/walu.h"

/* Weak bounds: a program with no built-in backend still links. */
extern const struct walimpls_builder *const __start_wal_backends[] __attribute__((weak));
extern const struct walimpls_builder *const __stop_wal_backends[] __attribute__((weak));

struct entry {
        const struct walimpls_builder *b;
        const char *origin;      /* static text or an owned plugin path */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct entry *entries;
static size_t n_entries, cap_entries;
static char **problems;
static size_t n_problems;

static void add_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add_problem(const char *fmt, ...)
{
        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        char **np = realloc(problems, (n_problems + 1) * sizeof(*np));
        if (!np) {
                free(msg);
                return;
        }
        problems = np;
        problems[n_problems++] = msg;
        walu_log(WAL_LOG_WARNING, "backend registry: %s", msg);
}

static bool name_valid(const char *name)
{
        if (!name || !*name || strlen(name) > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                      *p == '-'))
                        return false;
        return true;
}

/* Check a descriptor; on failure describe why in @why. */
static int check_builder(const struct walimpls_builder *b, char *why, size_t len)
{
        if (!b) {
                snprintf(why, len, "no builder given");
                return -EINVAL;
        }
        if (!name_valid(b->name)) {
                snprintf(why, len, "backend name '%s' is not 1-64 characters of [a-z0-9_-]",
                         b->name ? b->name : "(null)");
                return -EINVAL;
        }
        if (b->version == 0 || b->version > WALIMPLS_VERSION) {
                snprintf(why, len,
                         "backend '%s' was built for interface version %u; this libwal "
                         "supports 1 to %u",
                         b->name, b->version, WALIMPLS_VERSION);
                return -EINVAL;
        }
        if (!b->build) {
                snprintf(why, len, "backend '%s' has no build method", b->name);
                return -EINVAL;
        }
        return 0;
}

static struct entry *find_locked(const char *name)
{
        /* Sorted: binary search. */
        size_t lo = 0, hi = n_entries;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(entries[mid].b->name, name);
                if (c == 0)
                        return &entries[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* Insert in name order.  -EEXIST if taken, -ENOMEM. */
static int insert_locked(const struct walimpls_builder *b, const char *origin)
{
        if (find_locked(b->name))
                return -EEXIST;
        if (n_entries == cap_entries) {
                size_t cap = cap_entries ? cap_entries * 2 : 8;
                struct entry *ne = realloc(entries, cap * sizeof(*ne));
                if (!ne)
                        return -ENOMEM;
                entries = ne;
                cap_entries = cap;
        }
        size_t at = n_entries;
        while (at > 0 && strcmp(entries[at - 1].b->name, b->name) > 0)
                at--;
        memmove(&entries[at + 1], &entries[at], (n_entries - at) * sizeof(*entries));
        entries[at] = (struct entry){ b, origin };
        n_entries++;
        if (b->properties)
                wal_config_add_table(b->name, b->properties);
        return 0;
}

static int cmp_builders(const void *a, const void *b)
{
        const struct walimpls_builder *x = *(const struct walimpls_builder *const *)a;
        const struct walimpls_builder *y = *(const struct walimpls_builder *const *)b;
        return strcmp(x->name, y->name);
}

static void load_builtin(void)
{
        pthread_mutex_lock(&lock);
        const struct walimpls_builder *const *start = __start_wal_backends;
        const struct walimpls_builder *const *stop = __stop_wal_backends;
        if (start && stop && stop > start) {
                size_t n = (size_t)(stop - start);
                const struct walimpls_builder **sorted = malloc(n * sizeof(*sorted));
                if (sorted) {
                        size_t m = 0;
                        for (size_t i = 0; i < n; i++)
                                if (start[i])
                                        sorted[m++] = start[i];
                        /* Validate before sorting: the comparison reads names. */
                        size_t k = 0;
                        for (size_t i = 0; i < m; i++) {
                                char why[256];
                                if (check_builder(sorted[i], why, sizeof(why)) < 0)
                                        add_problem("built-in backend refused: %s", why);
                                else
                                        sorted[k++] = sorted[i];
                        }
                        qsort(sorted, k, sizeof(*sorted), cmp_builders);
                        for (size_t i = 0; i < k; i++) {
                                int r = insert_locked(sorted[i], "builtin");
                                if (r == -EEXIST)
                                        add_problem("built-in backend '%s' registered twice; "
                                                    "the second registration is ignored",
                                                    sorted[i]->name);
                        }
                        free(sorted);
                }
        }
        pthread_mutex_unlock(&lock);
}

void wal_registry_ensure_loaded(void)
{
        pthread_once(&once, load_builtin);
}

int wal_registry_add(const struct walimpls_builder *b, wal_error **reterr)
{
        char why[256];
        int r = check_builder(b, why, sizeof(why));
        if (r < 0)
                return wal_error_set(reterr, r, 0, "cannot register backend: %s", why);
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        r = insert_locked(b, "runtime");
        pthread_mutex_unlock(&lock);
        if (r == -EEXIST)
                return wal_error_set(reterr, r, 0,
                                     "cannot register backend '%s': a backend of that name "
                                     "is already registered",
                                     b->name);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "cannot register backend '%s': %s", b->name,
                                     wal_strerror(r));
        return 0;
}

int wal_registry_find(const char *name, const struct walimpls_builder **ret,
                      wal_error **reterr)
{
        if (!name || !ret)
                return wal_error_set(reterr, -EINVAL, 0, "no backend name given");
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        struct entry *e = find_locked(name);
        if (e) {
                *ret = e->b;
                pthread_mutex_unlock(&lock);
                return 0;
        }
        /* List the known names in the error. */
        size_t len = 1;
        for (size_t i = 0; i < n_entries; i++)
                len += strlen(entries[i].b->name) + 2;
        char *known = malloc(len);
        if (known) {
                known[0] = '\0';
                for (size_t i = 0; i < n_entries; i++) {
                        if (i)
                                strcat(known, ", ");
                        strcat(known, entries[i].b->name);
                }
        }
        pthread_mutex_unlock(&lock);
        int r = wal_error_set(reterr, -ENOENT, 0, "unknown backend '%s' (known: %s)", name,
                              known && *known ? known : "none");
        free(known);
        return r;
}

size_t wal_registry_count(void)
{
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        size_t n = n_entries;
        pthread_mutex_unlock(&lock);
        return n;
}

const struct walimpls_builder *wal_registry_at(size_t i)
{
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        const struct walimpls_builder *b = i < n_entries ? entries[i].b : NULL;
        pthread_mutex_unlock(&lock);
        return b;
}

const char *wal_registry_origin(const struct walimpls_builder *b)
{
        if (!b || !b->name)
                return NULL;
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        struct entry *e = find_locked(b->name);
        const char *o = e && e->b == b ? e->origin : NULL;
        pthread_mutex_unlock(&lock);
        return o;
}

size_t wal_registry_problem_count(void)
{
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        size_t n = n_problems;
        pthread_mutex_unlock(&lock);
        return n;
}

const char *wal_registry_problem(size_t i)
{
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&lock);
        const char *p = i < n_problems ? problems[i] : NULL;
        pthread_mutex_unlock(&lock);
        return p;
}
