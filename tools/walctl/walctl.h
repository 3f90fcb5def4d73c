/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/walctl.h: what the walctl command files share.
 *
 * walctl.c owns main(): it parses the global options, finds the command,
 * builds the effective configuration (settings.c) and validates the backend
 * name, then hands the command its own arguments.  Every command lives in a
 * file of its own (cmd-<name>.c) exporting one `struct walctl_command`; the
 * table in walctl.c lists them.  A command of WALCTL.md that is not written
 * yet is simply absent from the table, so it is rejected like any unknown
 * command and never shows in --help.
 *
 * walctl uses only the public API (<wal/wal.h>), like any embedding program.
 */
#ifndef WALCTL_H
#define WALCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal.h>

/* Exit codes: the table of WALCTL.md (the values of <sysexits.h>). */
enum {
        WALCTL_EXIT_OK = 0,
        WALCTL_EXIT_FAILURE = 1,      /* anything the table does not name */
        WALCTL_EXIT_USAGE = 64,       /* unknown flag, bad value, unknown property */
        WALCTL_EXIT_DATAERR = 65,     /* corrupt log, undecodable record, bad input */
        WALCTL_EXIT_NOCHANNEL = 66,   /* no such channel */
        WALCTL_EXIT_UNAVAILABLE = 69, /* backend unreachable, unknown, plugin failed */
        WALCTL_EXIT_IOERR = 74,       /* local I/O error */
        WALCTL_EXIT_FENCED = 75,      /* a newer term owns the channel */
};

/* Where the effective value of a property came from, lowest precedence first. */
enum walctl_source {
        WALCTL_SRC_DEFAULT = 0,
        WALCTL_SRC_FILE,
        WALCTL_SRC_ENV,
        WALCTL_SRC_FLAG,
};

struct walctl_setting {
        char *key;                    /* owned */
        enum walctl_source source;
};

/* The state of one walctl run. */
struct walctl {
        wal_config *cfg;              /* effective configuration, owned */
        struct walctl_setting *settings; /* source of every key set on cfg */
        size_t n_settings;
        const char *config_file;      /* -F or $WALCTL_CONFIG (borrowed), or NULL */
        const char **sets;            /* -X / -b assignments in command-line order,
                                         borrowed from argv; "backend=NAME" for -b */
        size_t n_sets;
        char **owned;                 /* strings made for sets[] ("backend=NAME") */
        size_t n_owned;
        int64_t term;                 /* --term, -1 when not given */
        int verbosity;                /* -1 quiet, 0 normal, 1 verbose, 2 debug */
        const struct walimpls_builder *backend; /* resolved backend (borrowed, static),
                                                   NULL if not needed and not named */
};

/* Command flags. */
enum {
        WALCTL_CMD_USES_BACKEND = 1u << 0, /* opens the configured backend */
        WALCTL_CMD_NO_SETUP     = 1u << 1, /* runs before configuration (help) */
};

struct walctl_command {
        const char *name;             /* "backends" */
        const char *args;             /* argument synopsis, "" if none */
        const char *summary;          /* one line for `walctl --help` */
        const char *help;             /* full text for `walctl help NAME` */
        unsigned flags;               /* WALCTL_CMD_* */
        /*
         * Run the command.  @argv[0] is the command name; the command parses
         * the rest (walctl_getopt helps).  The configuration is ready unless
         * the command has WALCTL_CMD_NO_SETUP.  Returns an exit code.
         */
        int (*run)(struct walctl *w, int argc, char **argv);
};

/* The commands (one file each). */
extern const struct walctl_command walctl_cmd_backends;
extern const struct walctl_command walctl_cmd_config;
extern const struct walctl_command walctl_cmd_help;

/** @param name  borrowed.  @returns the command called @p name (borrowed,
 *  static), or NULL. */
const struct walctl_command *walctl_find_command(const char *name);
/** @returns the i-th command of the table, or NULL past the end. */
const struct walctl_command *walctl_command_at(size_t i);

/** Print the global help to stdout. */
void walctl_print_global_help(void);
/** Print the help of @p c (borrowed) to stdout. */
void walctl_print_command_help(const struct walctl_command *c);

/* ---- Messages (all on stderr) ---- */

/** "walctl: <what>: <why>" on stderr; @p what and the arguments are borrowed. */
void walctl_error(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** As walctl_error() plus a "Try ..." hint; @returns WALCTL_EXIT_USAGE. */
int walctl_usage_error(const char *what, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/** A warning, unless -q. */
void walctl_warn(const struct walctl *w, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/** @returns the exit code for a negative errno a library call returned. */
int walctl_exit_code(int err);

/**
 * getopt_long() for a command's own options, with errors in walctl's format.
 * Call with optind = 0 before the first call (walctl_run_command does).
 * @param cmd        the command name, for messages (borrowed).
 * @param shortopts  as for getopt_long, without a leading '+' or ':'.
 * @returns the option character; -1 at the end of the options (operands
 *          start at optind; GNU order, so options may follow operands); '?'
 *          after printing a usage error naming the option, when the caller
 *          returns WALCTL_EXIT_USAGE.  -h/--help never reach a command: main
 *          answers them first.
 */
struct option;
int walctl_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                  const struct option *longopts);

/** Reject operands left after the options (argv borrowed); @returns 0 or
 *  WALCTL_EXIT_USAGE after printing the first one. */
int walctl_no_operands(const char *cmd, int argc, char **argv, int first);

/* ---- Configuration (settings.c) ---- */

/** The name of the environment variable of property @p key (borrowed):
 *  "local.dir" gives "WAL_LOCAL_DIR", written to @p buf (@p len bytes,
 *  truncated to fit, always terminated). */
void walctl_env_name(const char *key, char *buf, size_t len);

/**
 * Build w->cfg from, in rising precedence: defaults, the properties file
 * (w->config_file), the environment, then w->sets.  Prints the error.
 * @returns 0 or an exit code.
 */
int walctl_load_config(struct walctl *w);

/** @returns where the effective value of @p key (borrowed) came from. */
enum walctl_source walctl_source_of(const struct walctl *w, const char *key);
/** @returns "default", "file", "env" or "flag". */
const char *walctl_source_name(enum walctl_source s);

/** Free what struct walctl owns (not the struct). */
void walctl_done(struct walctl *w);

#endif /* WALCTL_H */
