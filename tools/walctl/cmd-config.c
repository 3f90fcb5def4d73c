/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-config.c: `walctl config list`.
 *
 * One line per property, core first, then each backend's in backend name
 * order (the order of wal_config_foreach_property), with seven tab-separated
 * fields: name, type, default, effective value, its source (default,
 * profile, file, env, flag), owner ("core" or the backend) and description.  A pass-through
 * prefix property ("kafka.") is listed as "kafka.*", followed by one line per
 * key set under it.  The value of a secret property (WAL_PROP_SECRET), and of
 * a pass-through key whose name mentions a password or a secret, is printed
 * as "********".  A tab, newline or other control character inside a field
 * is printed as a backslash escape so that every property stays one line.
 */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "walctl.h"

#define MASK "********"

/* Print @s with control characters escaped; NULL or "" prints "-". */
static void print_field(const char *s)
{
        if (!s || !*s) {
                fputs("-", stdout);
                return;
        }
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '\t')
                        fputs("\\t", stdout);
                else if (*p == '\n')
                        fputs("\\n", stdout);
                else if (*p == '\\')
                        fputs("\\\\", stdout);
                else if (*p < 0x20 || *p == 0x7f)
                        printf("\\x%02x", *p);
                else
                        putchar(*p);
        }
}

static bool key_looks_secret(const char *key)
{
        return strcasestr(key, "password") || strcasestr(key, "secret") ||
               strcasestr(key, "sasl.oauthbearer") || strstr(key, ".key.pem");
}

static void print_type(const struct wal_property *p)
{
        fputs(wal_prop_type_name(p->type), stdout);
        if (p->type == WAL_PROP_ENUM && p->choices) {
                putchar('(');
                print_field(p->choices);
                putchar(')');
        }
}

struct list_ctx {
        const struct walctl *w;
};

static void print_row(const struct walctl *w, const struct wal_property *p, const char *name,
                      const char *owner, const char *value, bool secret)
{
        enum walctl_source src = walctl_source_of(w, name);
        print_field(name);
        putchar('\t');
        print_type(p);
        putchar('\t');
        print_field(p->flags & WAL_PROP_PREFIX ? NULL : p->def);
        putchar('\t');
        print_field(value && secret ? MASK : value);
        putchar('\t');
        fputs(value ? walctl_source_name(src) : "-", stdout);
        putchar('\t');
        print_field(owner);
        putchar('\t');
        print_field(p->description);
        putchar('\n');
}

struct prefix_ctx {
        const struct walctl *w;
        const struct wal_property *p;
        const char *owner;
};

static int prefix_visit(void *arg, const char *key, const char *value)
{
        struct prefix_ctx *pc = arg;
        bool secret = (pc->p->flags & WAL_PROP_SECRET) || key_looks_secret(key);
        print_row(pc->w, pc->p, key, pc->owner, value, secret);
        return 0;
}

static int list_visit(void *arg, const struct wal_property *p, const char *owner,
                      const char *value)
{
        struct list_ctx *lc = arg;
        if (p->flags & WAL_PROP_PREFIX) {
                char name[256];
                snprintf(name, sizeof(name), "%s*", p->name);
                print_row(lc->w, p, name, owner, NULL, false);
                struct prefix_ctx pc = { lc->w, p, owner };
                wal_config_foreach_set(lc->w->cfg, p->name, prefix_visit, &pc);
                return 0;
        }
        print_row(lc->w, p, p->name, owner, value, (p->flags & WAL_PROP_SECRET) != 0);
        return 0;
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        for (;;) {
                int c = walctl_getopt("config", argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (optind >= argc)
                return walctl_usage_error("config", "no subcommand given (expected: list)");
        const char *sub = argv[optind];
        if (strcmp(sub, "list") != 0)
                return walctl_usage_error("config", "unknown subcommand '%s' (expected: list)",
                                          sub);
        if (walctl_no_operands("config list", argc, argv, optind + 1))
                return WALCTL_EXIT_USAGE;

        struct list_ctx lc = { w };
        int r = wal_config_foreach_property(w->cfg, list_visit, &lc);
        if (r < 0) {
                walctl_error("config list", "%s", wal_strerror(r));
                return walctl_exit_code(r);
        }
        return WALCTL_EXIT_OK;
}

const struct walctl_command walctl_cmd_config = {
        .name = "config",
        .args = "list",
        .summary = "list every configuration property, its value and source",
        .help = "config list\n"
                "  List every configuration property this build knows (the core ones,\n"
                "  then each registered backend's), one line each, with seven\n"
                "  tab-separated fields:\n"
                "    NAME  TYPE  DEFAULT  VALUE  SOURCE  OWNER  DESCRIPTION\n"
                "  VALUE is the effective value and SOURCE where it came from: flag\n"
                "  (-X or -b), env (WAL_<KEY>), file (-F or $WALCTL_CONFIG) or default.\n"
                "  \"-\" marks an empty field.  A pass-through prefix such as kafka.* is\n"
                "  followed by the keys set under it.  Secret values print as ********.\n"
                "\n"
                "Examples:\n"
                "  walctl config list\n"
                "  walctl -X local.dir=/var/lib/wal config list | grep '^local\\.'\n"
                "  WAL_MESSAGE_MAX_BYTES=1m walctl config list | cut -f1,4,5\n",
        .flags = 0,
        .run = run,
};
