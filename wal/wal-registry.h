/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-registry.h: the backend registry.
 *
 * Maps backend names to builders (walimpls/walimpls.h).  Three ways in:
 *
 *  1. Link time: WAL_REGISTER_BACKEND(builder) in the backend's source puts a
 *     pointer to the builder in the "wal_backends" linker section; at first
 *     use the registry collects the section, sorts it by name and rejects
 *     duplicates.  The section is private to one linked module (libwal.so,
 *     or a program linking libwal statically): a program that links the
 *     static archive must keep the object holding the registration, e.g.
 *     with meson's link_whole or -Wl,--whole-archive, or by referencing a
 *     symbol of that object.
 *  2. Run time: wal_registry_add(), from anywhere (tests, embedders).
 *  3. Plugins: shared objects found in $WAL_PLUGIN_PATH or the "plugin.path"
 *     property, or loaded with wal_registry_load_plugins() (wal/wal-plugin.h).
 *
 * Static linking.  An object file in a static archive (.a) is linked only if
 * the program references one of its symbols, and nothing references a
 * backend's object by name: its WAL_REGISTER_BACKEND entry silently vanishes
 * (NixOS PR #2698 is this failure).  libwal's own libwal.a is one prelinked
 * object, so linking it at all brings every built-in backend.  For a backend
 * of your own kept in a static archive, either link that archive whole
 * (meson `link_whole:`, or -Wl,--whole-archive lib.a -Wl,--no-whole-archive)
 * or anchor it: put WAL_BACKEND_ANCHOR(name) next to WAL_REGISTER_BACKEND in
 * the backend's file and WAL_USE_BACKEND(name) in any file the program
 * always links (main.c); the reference pulls the backend's object in.
 * @name is any C identifier, by convention the backend name with '-' as '_'.
 *
 * Thread safety: every function is thread-safe.  Builders are never removed,
 * so a builder pointer stays valid for the life of the process.
 */
#ifndef WAL_REGISTRY_H
#define WAL_REGISTRY_H

#include <stddef.h>

#include <walimpls/walimpls.h>
#include <wal/wal-common.h>
#include <wal/wal-error.h>

WAL_BEGIN_DECLS

#if defined(__has_attribute)
#  if __has_attribute(retain)
#    define WAL_RETAIN __attribute__((retain))
#  endif
#endif
#ifndef WAL_RETAIN
#  define WAL_RETAIN
#endif

/* Register a `const struct walimpls_builder` at link time. */
#define WAL_REGISTER_BACKEND(builder)                                        \
        static const struct walimpls_builder *const wal_backend_reg_##builder \
        __attribute__((section("wal_backends"), used,                        \
                       aligned(sizeof(void *)))) WAL_RETAIN = &(builder)

/* Define the anchor symbol of the backend in this file (see "Static linking"). */
#define WAL_BACKEND_ANCHOR(name)                                             \
        extern const char wal_backend_anchor_##name;                         \
        const char wal_backend_anchor_##name = 0

/* Reference the anchor of backend @name so a static link keeps its object. */
#define WAL_USE_BACKEND(name)                                                \
        extern const char wal_backend_anchor_##name;                         \
        static const char *const wal_backend_use_##name                      \
        __attribute__((used)) = &wal_backend_anchor_##name

/**
 * @brief Load the plugins found in @p path_list now (wal/wal-plugin.h).
 * @param path_list  colon-separated directories (every `*.so` in each, in
 *                   name order) or `.so` files (borrowed).
 * @returns 0 when every plugin found loaded (files already loaded are
 *          skipped); -ENOEXEC when at least one was refused or a directory
 *          could not be read, with an error carrying the first problem (all
 *          are recorded: wal_registry_problem()); -EINVAL NULL.  The other
 *          plugins still load.
 */
WAL_EXPORT int wal_registry_load_plugins(const char *path_list, wal_error **reterr);

/**
 * @brief Register a builder at run time.
 * @param b  the descriptor (borrowed: must outlive the process, normally static).
 * @returns 0; -EINVAL (NULL, no name, invalid name, no build method, version
 *          0 or newer than WALIMPLS_VERSION); -EEXIST a builder of that name
 *          is registered.  The error names the backend and the reason.
 */
WAL_EXPORT int wal_registry_add(const struct walimpls_builder *b, wal_error **reterr);

/**
 * @brief Look a builder up by name.
 * @param ret  the builder (static, borrowed), set only on success.
 * @returns 0; -EINVAL (NULL); -ENOENT, with an error listing the known names.
 */
WAL_EXPORT int wal_registry_find(const char *name, const struct walimpls_builder **ret,
                                 wal_error **reterr);

/** @returns the number of registered builders. */
WAL_EXPORT size_t wal_registry_count(void);

/** @returns the i-th builder in name order, or NULL when @p i is out of range. */
WAL_EXPORT const struct walimpls_builder *wal_registry_at(size_t i);

/** @returns where @p b came from: "builtin", "runtime", or a plugin's file
 *  path (borrowed, static); NULL if @p b is not registered. */
WAL_EXPORT const char *wal_registry_origin(const struct walimpls_builder *b);

/**
 * @brief Problems met while collecting builders (a duplicate linker-set entry,
 *        a plugin that failed to load), one message each.
 * @returns the number of problems; wal_registry_problem(i) gives the i-th
 *          message (borrowed, static).  The first 256 are kept; later ones
 *          are only logged.
 */
WAL_EXPORT size_t wal_registry_problem_count(void);
WAL_EXPORT const char *wal_registry_problem(size_t i);

WAL_END_DECLS

#endif /* WAL_REGISTRY_H */
