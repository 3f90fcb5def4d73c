/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-config.h: configuration properties.
 *
 * One table of typed properties (name, type, default, range, description,
 * owning backend) drives parsing, validation, `walctl config list` and the
 * documentation.  The core properties live in wal/config.c; every backend
 * brings its own table in its builder descriptor (walimpls.h), registered
 * when the registry first loads.  A wal_config holds the values set on it;
 * getters fall back to the property's default.
 *
 * Keys are dotted: "cache.max_bytes", "local.dir", "redis.url".  A property
 * flagged WAL_PROP_PREFIX accepts every key under its name: the Kafka
 * backend's "kafka." passes "kafka.<anything>" through to librdkafka.
 *
 * Value syntax by type:
 *   string    any text
 *   int       decimal, optional sign
 *   bool      true/false, yes/no, on/off, 1/0
 *   size      a count of bytes with an optional suffix k, m, g (powers of 1024)
 *   duration  milliseconds with an optional suffix ms, s, m, h
 *   enum      one of the property's choices ("a|b|c")
 *
 * Thread safety: a wal_config may be read from many threads at once; writes
 * need external serialisation.  Objects built from a config copy what they
 * need, so the config may be freed after use.
 *
 * Effective values: set on the config > the deployment profile's default
 * (the "profile" property) > the table's default; see wal_config_source().
 */
#ifndef WAL_CONFIG_H
#define WAL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <wal/wal-common.h>
#include <wal/wal-error.h>

WAL_BEGIN_DECLS

enum wal_prop_type {
        WAL_PROP_STRING = 1,
        WAL_PROP_INT,
        WAL_PROP_BOOL,
        WAL_PROP_SIZE,
        WAL_PROP_DURATION,
        WAL_PROP_ENUM,
};

enum {
        WAL_PROP_SECRET = 1u << 0, /* value is masked when listed */
        WAL_PROP_PREFIX = 1u << 1, /* name is a prefix: "kafka." accepts kafka.* */
};

/* One row of a property table.  Tables end with a row whose name is NULL. */
struct wal_property {
        const char *name;         /* dotted key */
        enum wal_prop_type type;
        const char *def;          /* default, in value syntax; NULL = unset */
        int64_t min, max;         /* bounds for int/size/duration (min > max: unbounded) */
        const char *choices;      /* enum: "a|b|c" */
        unsigned flags;           /* WAL_PROP_* */
        const char *description;  /* one sentence */
};

typedef struct wal_config wal_config;

/** @brief Make an empty config (every property at its default).
 *  @returns 0, -EINVAL (NULL @p ret), -ENOMEM. */
WAL_EXPORT int wal_config_new(wal_config **ret);
/** @brief Deep copy; @returns 0, -EINVAL, -ENOMEM. */
WAL_EXPORT int wal_config_copy(const wal_config *c, wal_config **ret);
/** Free; NULL is fine. */
WAL_EXPORT void wal_config_free(wal_config *c);

/**
 * @brief Set a property from its text form, after validating it.
 * @param key, value  copied.
 * @returns 0; -ENOENT unknown key; -EINVAL a value that does not parse or is
 *          out of range.  The error object names the key, the value and the
 *          rule (the range, the choices).
 */
WAL_EXPORT int wal_config_set(wal_config *c, const char *key, const char *value,
                              wal_error **reterr);

/**
 * @brief Parse "KEY=VALUE" and set it (walctl -X).
 * @returns as wal_config_set(), plus -EINVAL when there is no '='.
 */
WAL_EXPORT int wal_config_set_pair(wal_config *c, const char *pair, wal_error **reterr);

/** @brief Remove a value set earlier; 0 or -ENOENT if it was not set. */
WAL_EXPORT int wal_config_unset(wal_config *c, const char *key);

/** @returns true if @p key was set (not just defaulted). */
WAL_EXPORT bool wal_config_is_set(const wal_config *c, const char *key);

/**
 * @brief The effective text value: the one set, else the default.
 * @returns borrowed text valid until the key is next set or the config freed;
 *          NULL if the key is unknown or has neither value nor default.
 */
WAL_EXPORT const char *wal_config_get(const wal_config *c, const char *key);

/* Typed getters.  Each returns 0 and stores the effective value; -ENOENT if the
 * key is unknown or unset with no default; -EINVAL if the key has another type. */
WAL_EXPORT int wal_config_get_int(const wal_config *c, const char *key, int64_t *ret);
WAL_EXPORT int wal_config_get_bool(const wal_config *c, const char *key, bool *ret);
WAL_EXPORT int wal_config_get_size(const wal_config *c, const char *key, uint64_t *ret);
WAL_EXPORT int wal_config_get_duration_ms(const wal_config *c, const char *key,
                                          int64_t *ret);

/**
 * @brief Visit every value set on @p c whose key starts with @p prefix, in
 *        the order they were set (used for pass-through properties).
 * @param fn  return non-zero to stop; that value is returned.
 */
typedef int wal_config_visit_fn(void *arg, const char *key, const char *value);
WAL_EXPORT int wal_config_foreach_set(const wal_config *c, const char *prefix,
                                      wal_config_visit_fn *fn, void *arg);

/**
 * @brief Visit every known property, core first, then backends by name.
 * @param fn  called with the property row, the name of its owner ("core" or a
 *            backend name) and the effective value (NULL if none); return
 *            non-zero to stop.
 */
typedef int wal_config_property_fn(void *arg, const struct wal_property *p,
                                   const char *owner, const char *value);
WAL_EXPORT int wal_config_foreach_property(const wal_config *c,
                                           wal_config_property_fn *fn, void *arg);

/** @returns the row describing @p key (borrowed, static), or NULL if unknown. */
WAL_EXPORT const struct wal_property *wal_config_find_property(const char *key);

/* ---- Where values come from ---- */

/** Where the effective value of a property comes from, by precedence. */
enum wal_config_source {
        WAL_CONFIG_SOURCE_NONE = 0,  /* unknown key, or no value anywhere */
        WAL_CONFIG_SOURCE_DEFAULT,   /* the property table's default */
        WAL_CONFIG_SOURCE_PROFILE,   /* the default of the profile set on the config */
        WAL_CONFIG_SOURCE_SET,       /* set on the config (wal_config_set & co.) */
};

/**
 * @brief Where wal_config_get(@p c, @p key) takes its value from: a value set
 *        on @p c wins over the default of the deployment profile named by
 *        the "profile" property (standalone | distributed), which wins over
 *        the property table's default.
 * @param c    borrowed; NULL means an empty config.
 * @param key  borrowed.
 */
WAL_EXPORT enum wal_config_source wal_config_source(const wal_config *c, const char *key);

/**
 * @brief The default deployment profile @p profile gives @p key.
 * @returns static text, or NULL if that profile sets no default for the key
 *          (or either argument is NULL or unknown).
 */
WAL_EXPORT const char *wal_config_profile_default(const char *profile, const char *key);

/**
 * @brief Set every KEY = VALUE line of a properties file on @p c.
 *
 * Syntax: one KEY = VALUE per line (`backend = redis`, `redis.url = ...`);
 * blanks around the key and the value are dropped; empty lines and lines
 * whose first non-blank is '#' are skipped; a value keeps any '#' inside it.
 * Lines apply in order, so a later line overrides an earlier one, and a
 * "plugin.path" line loads its plugins before the lines after it are checked.
 * @param c     the config (borrowed); lines before a bad one stay set.
 * @param path  borrowed.
 * @returns 0; -ENOENT/-EACCES/... (negated errno) the file cannot be read;
 *          -EINVAL a line that is not KEY = VALUE or a bad value; -ENOENT an
 *          unknown key.  The error names the file, the line and the key
 *          ("conf/wal.properties:3: key nope.key: unknown property ...").
 */
WAL_EXPORT int wal_config_load_file(wal_config *c, const char *path, wal_error **reterr);

/** @returns "string", "int", "bool", "size", "duration", "enum". */
WAL_EXPORT const char *wal_prop_type_name(enum wal_prop_type type);

WAL_END_DECLS

#endif /* WAL_CONFIG_H */
