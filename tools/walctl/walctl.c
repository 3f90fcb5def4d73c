/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/walctl.c: main(), the global options and the command table.
 *
 * The command line is `walctl [GLOBAL OPTIONS] COMMAND [ARGS]` (WALCTL.md).
 * Global options stop at the first operand, which names the command; the
 * command parses the rest.  Before any command runs (help aside), the
 * configuration is built in full (settings.c) and the backend name is checked
 * against the registry: a name given explicitly (-b, -X backend=, WAL_BACKEND,
 * the file) is checked for every command, the default ("local") only for the
 * commands that open a backend, so `walctl backends` works in a build without
 * the default backend.  Errors go to stderr as "walctl: <what>: <why>";
 * stdout carries data only (and help when asked for).  The exit codes are
 * the table of WALCTL.md, in walctl.h.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walctl.h"

#ifndef WALCTL_VERSION
#define WALCTL_VERSION "unknown"
#endif

/* ---- The command table ---- */

/*
 * In the order --help lists them.  A new command: write cmd-<name>.c with its
 * `struct walctl_command`, declare it in walctl.h, add it here and to
 * meson.build, walctl.1 and walctl.bash-completion.
 */
static const struct walctl_command *const commands[] = {
        &walctl_cmd_append,
        &walctl_cmd_read,
        &walctl_cmd_channels,
        &walctl_cmd_info,
        &walctl_cmd_truncate,
        &walctl_cmd_bench,
#ifdef WALCTL_HAVE_LOCAL
        &walctl_cmd_verify,
        &walctl_cmd_repair,
#endif
#ifdef WALCTL_HAVE_KAFKA
        &walctl_cmd_mock_kafka,
#endif
        &walctl_cmd_backends,
        &walctl_cmd_config,
        &walctl_cmd_help,
};

const struct walctl_command *walctl_find_command(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i]->name, name) == 0)
                        return commands[i];
        return NULL;
}

const struct walctl_command *walctl_command_at(size_t i)
{
        return i < sizeof(commands) / sizeof(commands[0]) ? commands[i] : NULL;
}

/* ---- Messages ---- */

void walctl_error(const char *what, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "walctl: %s: ", what);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int walctl_usage_error(const char *what, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "walctl: %s: ", what);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'walctl --help' for more information.\n", stderr);
        return WALCTL_EXIT_USAGE;
}

void walctl_warn(const struct walctl *w, const char *fmt, ...)
{
        if (w && w->verbosity < 0)
                return;
        va_list ap;
        fputs("walctl: warning: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/*
 * The one place where a negative errno from the library becomes an exit code
 * of WALCTL.md.  Commands handle the codes whose meaning depends on the call
 * first (an unknown backend name is 69, not 66; EPIPE on stdout is a quiet 0).
 */
int walctl_exit_code(int err)
{
        switch (err) {
        case 0:
                return WALCTL_EXIT_OK;
        case -EINVAL:
        case -ERANGE:           /* a read position truncated away: a bad value */
                return WALCTL_EXIT_USAGE;
        case -EBADMSG:
        case -EILSEQ:
        case -EMSGSIZE:
        case -EPROTO:           /* a format version this build does not know */
                return WALCTL_EXIT_DATAERR;
        case -ENOENT:
                return WALCTL_EXIT_NOCHANNEL;
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -ECONNABORTED:
        case -ENOTCONN:
        case -EHOSTUNREACH:
        case -EHOSTDOWN:
        case -ENETUNREACH:
        case -ENETDOWN:
        case -ETIMEDOUT:
        case -EAGAIN:
        case -EACCES:           /* refused credentials */
        case -EPERM:
        case -EOPNOTSUPP:       /* the backend cannot do it */
        case -ENOEXEC:          /* a plugin that failed to load */
        case -EBUSY:            /* another process holds the channel's writer lock */
                return WALCTL_EXIT_UNAVAILABLE;
        case -EIO:
        case -ENOSPC:
        case -EDQUOT:
        case -EROFS:
        case -EFBIG:
        case -ENOTDIR:
        case -EISDIR:
        case -EMFILE:
        case -ENFILE:
        case -ENXIO:
                return WALCTL_EXIT_IOERR;
        case -ESTALE:
                return WALCTL_EXIT_FENCED;
        default:
                return WALCTL_EXIT_FAILURE;
        }
}

/* ---- Option parsing helpers ---- */

/*
 * Report the option getopt_long() just refused (it returned '?' or ':').
 * glibc leaves the option's text at argv[optind - 1] for a long option and
 * the character in optopt for a short one.
 */
static int option_error(const char *what, char **argv, int c, const struct option *longopts)
{
        const char *text = optind > 0 ? argv[optind - 1] : "";
        if (strncmp(text, "--", 2) == 0) {
                size_t len = strcspn(text + 2, "=");
                bool known = false;
                for (const struct option *o = longopts; o && o->name; o++)
                        if (strlen(o->name) == len && strncmp(o->name, text + 2, len) == 0)
                                known = true;
                if (c == ':')
                        return walctl_usage_error(what, "option '--%.*s' needs a value",
                                                  (int)len, text + 2);
                if (known)
                        return walctl_usage_error(what, "option '--%.*s' takes no value",
                                                  (int)len, text + 2);
                return walctl_usage_error(what, "unknown option '--%.*s'", (int)len, text + 2);
        }
        if (c == ':')
                return walctl_usage_error(what, "option '-%c' needs a value", optopt);
        return walctl_usage_error(what, "unknown option '-%c'", optopt);
}

int walctl_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                  const struct option *longopts)
{
        char spec[128];
        snprintf(spec, sizeof(spec), ":%s", shortopts ? shortopts : "");
        opterr = 0;
        int c = getopt_long(argc, argv, spec, longopts, NULL);
        if (c == '?' || c == ':') {
                option_error(cmd, argv, c, longopts);
                return '?';
        }
        return c;
}

int walctl_no_operands(const char *cmd, int argc, char **argv, int first)
{
        if (first < argc)
                return walctl_usage_error(cmd, "unexpected argument '%s'", argv[first]);
        return 0;
}

/* Does the command line of a command ask for help?  Scans up to "--". */
static bool wants_help(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--") == 0)
                        return false;
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
                        return true;
        }
        return false;
}

/* ---- Help and version ---- */

void walctl_print_global_help(void)
{
        fputs("Usage: walctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
              "\n"
              "Append to, read, inspect and check write-ahead logs kept by libwal's\n"
              "backends (local file log, Redis Streams, Kafka, memory).\n"
              "\n"
              "Global options (before the command):\n"
              "  -b, --backend NAME      backend to use; same as -X backend=NAME\n"
              "                          (default: local, the embedded default)\n"
              "  -X, --set KEY=VALUE     set a configuration property; repeatable\n"
              "                          (e.g. -X local.dir=./wal-data,\n"
              "                          -X redis.url=redis://127.0.0.1:6379)\n"
              "  -F, --config FILE       properties file: KEY=VALUE lines, # comments;\n"
              "                          default $WALCTL_CONFIG\n"
              "      --term N            term to open channels with (default: the\n"
              "                          current term, or 1)\n"
              "  -q, --quiet             print errors only\n"
              "  -v, --verbose           print what the library reports; twice for debug\n"
              "  -h, --help              this help; `walctl help COMMAND` for a command\n"
              "      --version           versions and the backends compiled in\n"
              "\n"
              "Commands:\n",
              stdout);
        for (size_t i = 0; walctl_command_at(i); i++) {
                const struct walctl_command *c = walctl_command_at(i);
                char left[64];
                snprintf(left, sizeof(left), "%s%s%s", c->name, *c->args ? " " : "", c->args);
                printf("  %-22s  %s\n", left, c->summary);
        }
        fputs("\n"
              "Configuration, highest precedence first:\n"
              "  1. -X KEY=VALUE and -b NAME, in command-line order (the last wins)\n"
              "  2. environment: every property KEY has the variable WAL_ + KEY in\n"
              "     upper case with '.' (and any other non-alphanumeric) as '_':\n"
              "     local.dir is WAL_LOCAL_DIR, backend is WAL_BACKEND.  Pass-through\n"
              "     properties (kafka.*) have no variables: use -X or the file.\n"
              "  3. the properties file (-F FILE, else $WALCTL_CONFIG)\n"
              "  4. the property's default\n"
              "`walctl config list` shows every property, its value and its source.\n"
              "\n"
              "Exit codes:\n"
              "  0 success; 1 any other failure (out of memory, an append ended by\n"
              "  SIGINT or SIGTERM); 64 usage error (unknown flag, bad value, unknown\n"
              "  property); 65 bad data; 66 no such channel; 69 backend unavailable or\n"
              "  unknown; 74 local I/O error; 75 fenced (a newer term owns the channel)\n",
              stdout);
}

void walctl_print_command_help(const struct walctl_command *c)
{
        printf("Usage: walctl [GLOBAL OPTIONS] %s%s%s\n\n%s", c->name, *c->args ? " " : "",
               c->args, c->help);
}

static int print_version(void)
{
        printf("walctl %s (libwal %s)\n", WALCTL_VERSION, wal_version());
        fputs("backends compiled in:", stdout);
        size_t n = 0;
        for (size_t i = 0; i < wal_registry_count(); i++) {
                const struct walimpls_builder *b = wal_registry_at(i);
                const char *origin = wal_registry_origin(b);
                if (b && origin && strcmp(origin, "builtin") == 0) {
                        printf(" %s", b->name);
                        n++;
                }
        }
        fputs(n ? "\n" : " none\n", stdout);
        return WALCTL_EXIT_OK;
}

/* ---- Library log hook ---- */

static void log_hook(void *arg, int level, const char *msg)
{
        const struct walctl *w = arg;
        int max = w->verbosity < 0 ? WAL_LOG_ERROR
                : w->verbosity == 0 ? WAL_LOG_WARNING
                : w->verbosity == 1 ? WAL_LOG_INFO
                                    : WAL_LOG_DEBUG;
        if (level > max)
                return;
        const char *tag = level <= WAL_LOG_ERROR ? "error"
                        : level <= WAL_LOG_WARNING ? "warning"
                        : level <= WAL_LOG_INFO ? "info"
                                                : "debug";
        fprintf(stderr, "walctl: libwal %s: %s\n", tag, msg);
}

/* ---- Global options ---- */

enum { OPT_TERM = 0x100, OPT_VERSION };

static const struct option global_options[] = {
        { "backend", required_argument, NULL, 'b' },
        { "set", required_argument, NULL, 'X' },
        { "config", required_argument, NULL, 'F' },
        { "term", required_argument, NULL, OPT_TERM },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
};

static int add_set(struct walctl *w, const char *pair)
{
        const char **ns = realloc(w->sets, (w->n_sets + 1) * sizeof(*ns));
        if (!ns) {
                walctl_error("command line", "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        w->sets = ns;
        w->sets[w->n_sets++] = pair;
        return 0;
}

static int add_backend_set(struct walctl *w, const char *name)
{
        char **no = realloc(w->owned, (w->n_owned + 1) * sizeof(*no));
        if (!no) {
                walctl_error("command line", "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        w->owned = no;
        char *pair = NULL;
        if (asprintf(&pair, "backend=%s", name) < 0) {
                walctl_error("command line", "%s", strerror(ENOMEM));
                return WALCTL_EXIT_FAILURE;
        }
        w->owned[w->n_owned++] = pair;
        return add_set(w, pair);
}

static int parse_term(const char *s, int64_t *ret)
{
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Check the backend named by the configuration; @returns 0 or an exit code. */
static int resolve_backend(struct walctl *w, const struct walctl_command *cmd)
{
        bool named = wal_config_is_set(w->cfg, "backend");
        if (!named && !(cmd->flags & WALCTL_CMD_USES_BACKEND))
                return 0;
        const char *name = wal_config_get(w->cfg, "backend");
        wal_error *err = NULL;
        int r = wal_registry_find(name ? name : "", &w->backend, &err);
        if (r < 0) {
                walctl_error("backend", "%s", wal_error_message(err));
                wal_error_free(err);
                return r == -ENOENT ? WALCTL_EXIT_UNAVAILABLE : walctl_exit_code(r);
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct walctl w = { .term = -1 };
        bool help = false, version = false;
        int rc = 0;

        /* A closed pipe must show up as EPIPE on the write, which the data
         * commands treat as a quiet end, never as a fatal signal. */
        signal(SIGPIPE, SIG_IGN);

        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, "+:b:X:F:qvh", global_options, NULL);
                if (c == -1)
                        break;
                switch (c) {
                case 'b':
                        rc = add_backend_set(&w, optarg);
                        break;
                case 'X':
                        rc = add_set(&w, optarg);
                        break;
                case 'F':
                        w.config_file = optarg;
                        break;
                case OPT_TERM:
                        if (parse_term(optarg, &w.term) < 0)
                                rc = walctl_usage_error("--term", "'%s' is not a term "
                                                        "(a non-negative integer)", optarg);
                        break;
                case 'q':
                        w.verbosity = -1;
                        break;
                case 'v':
                        w.verbosity = w.verbosity < 0 ? 1 : w.verbosity + 1;
                        break;
                case 'h':
                        help = true;
                        break;
                case OPT_VERSION:
                        version = true;
                        break;
                default:
                        rc = option_error("command line", argv, c, global_options);
                        break;
                }
                if (rc)
                        goto out;
        }

        wal_set_log_hook(log_hook, &w);

        if (help && optind < argc) {
                /* `walctl --help CMD ...` is `walctl CMD ... --help`. */
                const struct walctl_command *hc = walctl_find_command(argv[optind]);
                if (!hc)
                        rc = walctl_usage_error("--help", "unknown command '%s'", argv[optind]);
                else
                        walctl_print_command_help(hc);
                goto out;
        }
        if (help) {
                walctl_print_global_help();
                goto out;
        }
        if (version) {
                if (walctl_no_operands("--version", argc, argv, optind))
                        rc = WALCTL_EXIT_USAGE;
                else
                        rc = print_version();
                goto out;
        }
        if (optind >= argc) {
                rc = walctl_usage_error("command line", "no command given");
                goto out;
        }

        const struct walctl_command *cmd = walctl_find_command(argv[optind]);
        if (!cmd) {
                rc = walctl_usage_error("command line", "unknown command '%s'", argv[optind]);
                goto out;
        }
        int cargc = argc - optind;
        char **cargv = argv + optind;
        if (wants_help(cargc, cargv)) {
                walctl_print_command_help(cmd);
                goto out;
        }

        if (!(cmd->flags & WALCTL_CMD_NO_SETUP)) {
                if (!w.config_file) {
                        const char *env = getenv("WALCTL_CONFIG");
                        if (env && *env)
                                w.config_file = env;
                }
                rc = walctl_load_config(&w);
                if (rc)
                        goto out;
                rc = resolve_backend(&w, cmd);
                if (rc)
                        goto out;
        }

        optind = 0;
        rc = cmd->run(&w, cargc, cargv);
out:
        wal_set_log_hook(NULL, NULL);
        /* A closed pipe on stdout is the reader's choice, not an error. */
        if (fflush(stdout) != 0 && errno != EPIPE && rc == 0) {
                walctl_error("standard output", "%s", strerror(errno));
                rc = WALCTL_EXIT_IOERR;
        }
        walctl_done(&w);
        return rc;
}
