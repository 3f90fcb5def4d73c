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
 *
 * Plugins (wal/wal-plugin.h): right after the built-ins, every `*.so` of the
 * directories in $WAL_PLUGIN_PATH is loaded; wal_registry_load_plugins()
 * (and so the "plugin.path" property) loads more later.  A file is checked
 * before dlopen (readable, a regular file, ELF magic) so the common mistakes
 * get a clear reason instead of a loader message, then dlopen'ed with
 * RTLD_NOW | RTLD_LOCAL and asked for its descriptor.  A plugin is accepted
 * or refused as a whole: every builder is validated and every name checked
 * against the registry under the lock before any is inserted; a refused
 * plugin is dlclose'd and recorded as a problem naming the file.  Accepted
 * plugins stay loaded for the life of the process (their builders are
 * static data inside them).  Files are remembered by device and inode, so
 * loading the same directory twice (the variable and the property both
 * name it) is harmless.  One mutex serialises loading; the registry lock is
 * never held across dlopen(), which runs the plugin's constructors.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wal/wal-log.h>
#include <wal/wal-plugin.h>
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
static pthread_mutex_t problems_lock = PTHREAD_MUTEX_INITIALIZER; /* problems, n_problems */
static char **problems;
static size_t n_problems;

static void add_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Problems kept for wal_registry_problem(); later ones are only logged, so
 * a program that sets plugin.path in a loop (a fuzzer) cannot grow the list
 * without bound. */
#define MAX_PROBLEMS 256

static void add_problem(const char *fmt, ...)
{
        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        /* The same problem met again (WAL_PLUGIN_PATH and a plugin.path
         * naming the same missing directory) is reported once. */
        pthread_mutex_lock(&problems_lock);
        for (size_t i = 0; i < n_problems; i++) {
                if (strcmp(problems[i], msg) == 0) {
                        pthread_mutex_unlock(&problems_lock);
                        free(msg);
                        return;
                }
        }
        pthread_mutex_unlock(&problems_lock);
        walu_log(WAL_LOG_WARNING, "backend registry: %s", msg);
        pthread_mutex_lock(&problems_lock);
        char **np = n_problems < MAX_PROBLEMS
                ? realloc(problems, (n_problems + 1) * sizeof(*np)) : NULL;
        if (np) {
                problems = np;
                problems[n_problems++] = msg;
                msg = NULL;
        }
        pthread_mutex_unlock(&problems_lock);
        free(msg);
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

static void load_env_plugins(void);

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
        load_env_plugins();
}


/* ---- Plugins ---- */

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER; /* serialises loading */

struct loaded_file {
        dev_t dev;
        ino_t ino;
};
static struct loaded_file *loaded;    /* files accepted or refused already */
static size_t n_loaded;

/* Remember @st's file; true if it was seen before.  Caller holds load_lock. */
static bool seen_before(const struct stat *st)
{
        for (size_t i = 0; i < n_loaded; i++)
                if (loaded[i].dev == st->st_dev && loaded[i].ino == st->st_ino)
                        return true;
        struct loaded_file *nl = realloc(loaded, (n_loaded + 1) * sizeof(*nl));
        if (nl) {
                loaded = nl;
                loaded[n_loaded++] = (struct loaded_file){ st->st_dev, st->st_ino };
        }
        return false;
}

/*
 * Check @path before dlopen: readable, a regular file, ELF magic.  Stores the
 * file's identity in *st.  0, or -1 after writing the reason into @why.
 */
static int precheck(const char *path, struct stat *st, char *why, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                snprintf(why, len, "cannot read it: %s", strerror(errno));
                return -1;
        }
        int r = -1;
        unsigned char magic[4];
        if (fstat(fd, st) < 0)
                snprintf(why, len, "cannot read it: %s", strerror(errno));
        else if (!S_ISREG(st->st_mode))
                snprintf(why, len, "not a regular file");
        else {
                ssize_t n = pread(fd, magic, sizeof(magic), 0);
                if (n < 0)
                        snprintf(why, len, "cannot read it: %s", strerror(errno));
                else if (n < 4 || memcmp(magic, "\177ELF", 4) != 0)
                        snprintf(why, len, "not a shared object (no ELF header)");
                else
                        r = 0;
        }
        close(fd);
        return r;
}

/*
 * Validate a plugin's builders and insert them all, or none.  Caller holds
 * load_lock, not lock.  0, or -1 with the reason in @why.
 */
static int accept_builders(const struct walimpls_builder *const *bs, const char *origin,
                           char *why, size_t len)
{
        size_t n = 0;
        for (; bs[n]; n++) {
                if (check_builder(bs[n], why, len) < 0)
                        return -1;
                for (size_t j = 0; j < n; j++)
                        if (strcmp(bs[j]->name, bs[n]->name) == 0) {
                                snprintf(why, len, "it exports backend '%s' twice",
                                         bs[n]->name);
                                return -1;
                        }
        }
        if (n == 0) {
                snprintf(why, len, "it exports no backend");
                return -1;
        }
        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < n; i++) {
                struct entry *e = find_locked(bs[i]->name);
                if (e) {
                        snprintf(why, len, "backend name '%s' is taken (origin: %s)",
                                 bs[i]->name, e->origin);
                        pthread_mutex_unlock(&lock);
                        return -1;
                }
        }
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = insert_locked(bs[i], origin);
        pthread_mutex_unlock(&lock);
        if (r < 0) {
                snprintf(why, len, "%s", strerror(-r));
                return -1;
        }
        return 0;
}

/* Load one plugin file.  0 loaded or skipped (seen before), -1 refused (a
 * problem is recorded).  Caller holds load_lock. */
static int load_plugin_file(const char *path, char **first_problem)
{
        char why[512];
        struct stat st;
        void *h = NULL;
        if (precheck(path, &st, why, sizeof(why)) < 0)
                goto refuse;
        if (seen_before(&st))
                return 0;
        dlerror();
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                const char *e = dlerror();
                snprintf(why, sizeof(why), "dlopen failed: %s", e ? e : "unknown error");
                goto refuse;
        }
        wal_plugin_entry_fn *entry;
        *(void **)&entry = dlsym(h, WAL_PLUGIN_ENTRY_SYMBOL);
        if (!entry) {
                snprintf(why, sizeof(why),
                         "it does not export the entry point '%s' (not a libwal plugin?)",
                         WAL_PLUGIN_ENTRY_SYMBOL);
                goto refuse;
        }
        const struct wal_plugin *pl = entry();
        if (!pl || !pl->builders) {
                snprintf(why, sizeof(why), "its entry point returned no descriptor");
                goto refuse;
        }
        if (pl->interface_version == 0 || pl->interface_version > WALIMPLS_VERSION) {
                snprintf(why, sizeof(why),
                         "it was built for interface version %u; this libwal supports 1 to %u",
                         pl->interface_version, WALIMPLS_VERSION);
                goto refuse;
        }
        char *origin = strdup(path);
        if (!origin) {
                snprintf(why, sizeof(why), "out of memory");
                goto refuse;
        }
        if (accept_builders(pl->builders, origin, why, sizeof(why)) < 0) {
                free(origin);
                goto refuse;
        }
        walu_log(WAL_LOG_INFO, "backend registry: loaded plugin %s", path);
        return 0;   /* origin and the handle live as long as the process */
refuse:
        if (h)
                dlclose(h);
        add_problem("plugin %s refused: %s", path, why);
        if (first_problem && !*first_problem &&
            asprintf(first_problem, "plugin %s refused: %s", path, why) < 0)
                *first_problem = NULL;
        return -1;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with_so(const char *name)
{
        size_t n = strlen(name);
        return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* Load every *.so of directory @dir, in name order.  Returns the number of
 * refusals (a directory that cannot be read counts as one). */
static int load_plugin_dir(const char *dir, char **first_problem)
{
        DIR *d = opendir(dir);
        if (!d) {
                char msg[512];
                snprintf(msg, sizeof(msg), "plugin directory %s: %s", dir, strerror(errno));
                add_problem("%s", msg);
                if (first_problem && !*first_problem)
                        *first_problem = strdup(msg);
                return 1;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || !ends_with_so(de->d_name))
                        continue;
                char **nn = realloc(names, (n + 1) * sizeof(*nn));
                if (!nn)
                        break;
                names = nn;
                if (asprintf(&names[n], "%s/%s", dir, de->d_name) < 0)
                        break;
                n++;
        }
        closedir(d);
        qsort(names, n, sizeof(*names), cmp_str);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
                if (load_plugin_file(names[i], first_problem) < 0)
                        bad++;
                free(names[i]);
        }
        free(names);
        return bad;
}

/* Load every entry of a colon-separated list.  Returns the refusal count. */
static int load_path_list(const char *list, char **first_problem)
{
        char *copy = strdup(list);
        if (!copy)
                return 0;
        int bad = 0;
        pthread_mutex_lock(&load_lock);
        char *save = NULL;
        for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
                struct stat st;
                if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode))
                        bad += load_plugin_file(p, first_problem) < 0;
                else
                        bad += load_plugin_dir(p, first_problem);
        }
        pthread_mutex_unlock(&load_lock);
        free(copy);
        return bad;
}

static void load_env_plugins(void)
{
        const char *env = getenv("WAL_PLUGIN_PATH");
        if (env && *env)
                load_path_list(env, NULL);
}

int wal_registry_load_plugins(const char *path_list, wal_error **reterr)
{
        if (!path_list)
                return wal_error_set(reterr, -EINVAL, 0, "no plugin path given");
        wal_registry_ensure_loaded();
        char *first = NULL;
        int bad = load_path_list(path_list, &first);
        int r = 0;
        if (bad > 0)
                r = wal_error_set(reterr, -ENOEXEC, 0, "%s%s", first ? first : "plugin refused",
                                  bad > 1 ? " (and more: see wal_registry_problem())" : "");
        free(first);
        return r;
}

void wal_registry_config_plugin_path(const char *path_list)
{
        if (path_list && *path_list)
                wal_registry_load_plugins(path_list, NULL);
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
        pthread_mutex_lock(&problems_lock);
        size_t n = n_problems;
        pthread_mutex_unlock(&problems_lock);
        return n;
}

const char *wal_registry_problem(size_t i)
{
        wal_registry_ensure_loaded();
        pthread_mutex_lock(&problems_lock);
        const char *p = i < n_problems ? problems[i] : NULL;
        pthread_mutex_unlock(&problems_lock);
        return p;
}
