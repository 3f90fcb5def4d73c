/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-plugin.h: backends shipped as plugins (shared objects loaded at
 * run time).
 *
 * A plugin is a shared object (`.so`) that exports ONE symbol,
 * WAL_PLUGIN_ENTRY_SYMBOL ("wal_plugin_entry"), a function of type
 * wal_plugin_entry_fn returning a static struct wal_plugin: the interface
 * version the plugin was compiled against and its builders.  The simplest
 * way to write it is the WAL_PLUGIN() macro:
 *
 *     static const struct walimpls_builder my_builder = { ... };
 *     WAL_PLUGIN(&my_builder);
 *
 * Where plugins come from.  At the first use of the registry, every `*.so`
 * file in the directories listed in $WAL_PLUGIN_PATH (colon-separated; an
 * entry may also name one `.so` file) is loaded, in name order within each
 * directory.  Setting the core property "plugin.path" on a wal_config (same
 * syntax) loads those too, at once, so the plugin's own properties can be
 * set next; wal_registry_load_plugins() does the same from code.  Loading is
 * process-wide and idempotent: a file already loaded is skipped.
 *
 * A plugin is refused, as a whole, with a problem naming the file and the
 * reason (wal_registry_problem(), also logged as a warning) when: the file
 * cannot be read; it is not an ELF shared object; dlopen() fails; it does not
 * export WAL_PLUGIN_ENTRY_SYMBOL; it was built for an interface version this
 * libwal does not support; it carries no builder or an invalid one; or one of
 * its backend names is already taken (by a built-in backend, a run-time
 * registration or an earlier plugin).  Refusing one plugin never stops the
 * others from loading.  wal_registry_origin() of a plugin's builder is the
 * file it came from.
 *
 * Linking.  A plugin uses libwal's public API (walimpls helpers, messages,
 * errors, configuration) and links libwal.so (pkg-config `wal`).  The host
 * program must use libwal as a shared library too, so that plugin and host
 * share one registry: a plugin's NEEDED libwal.so.0 then resolves to the copy
 * already loaded.  A program linking libwal statically cannot host plugins
 * that link libwal.so (they would get a second, separate libwal).
 *
 * A loaded plugin is never unloaded: its builders stay valid for the life of
 * the process, like every registered builder.
 */
#ifndef WAL_PLUGIN_H
#define WAL_PLUGIN_H

#include <stdint.h>

#include <walimpls/walimpls.h>
#include <wal/wal-common.h>

WAL_BEGIN_DECLS

/* The name of the symbol every plugin exports. */
#define WAL_PLUGIN_ENTRY_SYMBOL "wal_plugin_entry"

/* What a plugin's entry point returns (static: it is never freed). */
struct wal_plugin {
        uint32_t interface_version;   /* WALIMPLS_VERSION the plugin was built with */
        uint32_t reserved;            /* 0 */
        const struct walimpls_builder *const *builders; /* NULL-terminated, >= 1 entry */
};

/* The entry point: no arguments, returns a static descriptor (never NULL). */
typedef const struct wal_plugin *wal_plugin_entry_fn(void);

/*
 * Define the entry point of a plugin exporting the given builders (pointers
 * to static `const struct walimpls_builder`).  Use once per plugin, at file
 * scope.
 */
#define WAL_PLUGIN(...)                                                            \
        static const struct walimpls_builder *const wal_plugin_builders_[] = {     \
                __VA_ARGS__, NULL                                                  \
        };                                                                         \
        static const struct wal_plugin wal_plugin_desc_ = {                        \
                .interface_version = WALIMPLS_VERSION,                             \
                .reserved = 0,                                                     \
                .builders = wal_plugin_builders_,                                  \
        };                                                                         \
        WAL_EXPORT const struct wal_plugin *wal_plugin_entry(void);                \
        const struct wal_plugin *wal_plugin_entry(void)                            \
        {                                                                          \
                return &wal_plugin_desc_;                                          \
        }

WAL_END_DECLS

#endif /* WAL_PLUGIN_H */
