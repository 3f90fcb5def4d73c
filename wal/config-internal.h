/* SPDX-License-Identifier: MIT */
/*
 * wal/config-internal.h: what the registry tells the configuration (not
 * installed).
 */
#ifndef WAL_CONFIG_INTERNAL_H
#define WAL_CONFIG_INTERNAL_H

#include <wal/wal-config.h>

/* Add a backend's property table (static, borrowed) under @owner (static).
 * Called by the registry for every builder it accepts.  Thread-safe. */
void wal_config_add_table(const char *owner, const struct wal_property *table);

/* Defined by registry/registry.c; weak here so the value types link alone. */
void wal_registry_ensure_loaded(void) __attribute__((weak));

/* Defined by registry/registry.c (weak here, as above): load the plugins of
 * a "plugin.path" value (borrowed) now.  Problems are recorded, not returned. */
void wal_registry_config_plugin_path(const char *path_list) __attribute__((weak));

#endif /* WAL_CONFIG_INTERNAL_H */
