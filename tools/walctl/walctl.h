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
#include <wal/wal-api.h>

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
        WALCTL_SRC_PROFILE,           /* not set: the "profile" property's default
                                         (ranks between default and file) */
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
extern const struct walctl_command walctl_cmd_append;
extern const struct walctl_command walctl_cmd_read;
extern const struct walctl_command walctl_cmd_channels;
extern const struct walctl_command walctl_cmd_info;
extern const struct walctl_command walctl_cmd_truncate;
extern const struct walctl_command walctl_cmd_bench;
extern const struct walctl_command walctl_cmd_verify;  /* local backend builds only */
extern const struct walctl_command walctl_cmd_repair;  /* local backend builds only */
extern const struct walctl_command walctl_cmd_mock_kafka; /* kafka backend builds only */

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
/* What walimpls_channel_name_valid() accepts (channel and vchannel names). */
#define WALCTL_NAME_RULE "1..200 bytes of [A-Za-z0-9._-], not starting with '.' or '-'"

/** As walctl_error() plus a "Try ..." hint; @returns WALCTL_EXIT_USAGE. */
int walctl_usage_error(const char *what, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/** A warning, unless -q. */
void walctl_warn(const struct walctl *w, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/** @returns the exit code for a negative errno a library call returned: the
 *  one place where errors become the exit codes of WALCTL.md. */
int walctl_exit_code(int err);

/**
 * Report a failed library call: "walctl: <what>: <message of err>" (or of
 * wal_strerror(r) when @p err is NULL) and free @p err (consumed; may be NULL).
 * @returns walctl_exit_code(r).
 */
int walctl_fail(const char *what, int r, wal_error *err);

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

/* ---- Backends and channels (common.c) ---- */

/** Build the opener of the configured backend into *ret (owned by the caller:
 *  wal_opener_close()).  Prints the error.  @returns 0 or an exit code. */
int walctl_opener(struct walctl *w, wal_opener **ret);

/**
 * Open @p channel (borrowed) read-only at --term (0 when not given) into
 * *ret (owned by the caller: wal_close()).  Prints the error (66 when the
 * channel does not exist).  @returns 0 or an exit code.
 */
int walctl_open_ro(struct walctl *w, wal_opener *o, const char *channel, wal **ret);

/** What walctl_open_rw() does with a channel that does not exist. */
enum walctl_create {
        WALCTL_MUST_EXIST,            /* an error (66) */
        WALCTL_CREATE,                /* create it */
        WALCTL_CREATE_LATER,          /* return 0 with *ret NULL: the caller
                                       * creates it later (WALCTL_CREATE) */
};

/**
 * Open @p channel read-write at --term, or when none was given at the term
 * its owner holds now (1 for a new channel), so that walctl joins the
 * current writer's term instead of fencing it.  @p create says what happens
 * when the channel does not exist.  Prints the error.  @returns 0 or an
 * exit code.
 */
int walctl_open_rw(struct walctl *w, wal_opener *o, const char *channel,
                   enum walctl_create create, wal **ret);

/* ---- Signals (common.c) ---- */

/**
 * Block SIGINT and SIGTERM in the calling thread (and so in every thread it
 * creates afterwards: call this before opening a backend) and return a
 * signalfd that becomes readable when one arrives, or a negative errno.
 * The fd is closed at exit.
 */
int walctl_signal_fd(void);

/** @returns true if a signal is pending on @p sigfd (consumes it). */
bool walctl_signal_pending(int sigfd);

/* ---- Values (common.c) ---- */

/** Parse a decimal count in [@p min, @p max] from @p s (borrowed); 0 or -EINVAL. */
int walctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/** Monotonic clock in nanoseconds. */
uint64_t walctl_now_ns(void);

/* ---- Standard output (output.c) ----
 * One buffer of walctl's own in front of fd 1, written by one thread.  The
 * first write error is kept (walctl_out_error) and later writes dropped. */

void walctl_out_write(const void *p, size_t len);
void walctl_out_putc(char c);
void walctl_out_puts(const char *s);
void walctl_out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Write out the buffer; @returns 0 or the first write error (negative errno). */
int walctl_out_flush(void);
/** @returns the first write error (negative errno), or 0. */
int walctl_out_error(void);
/** Flush and decide: 0 when written or when the reader went away (EPIPE is a
 *  quiet end), else print the error naming @p what and return 74. */
int walctl_out_finish(const char *what);

/** @returns true if @p buf (@p len bytes, borrowed) is valid UTF-8 (RFC 3629). */
bool walctl_utf8_valid(const void *buf, size_t len);
/** Write @p buf as a JSON string, quotes included; the caller has checked it
 *  is valid UTF-8.  Control characters, quote and backslash are escaped. */
void walctl_json_string(const void *buf, size_t len);
/** walctl_json_string() of a C string (NULL writes ""). */
void walctl_json_cstr(const char *s);
/** Write @p buf base64-encoded (RFC 4648, padded) as a JSON string. */
void walctl_base64(const void *buf, size_t len);

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
/** @returns "default", "profile", "file", "env" or "flag". */
const char *walctl_source_name(enum walctl_source s);

/** Free what struct walctl owns (not the struct). */
void walctl_done(struct walctl *w);

#endif /* WALCTL_H */
