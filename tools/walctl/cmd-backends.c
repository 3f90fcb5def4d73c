/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-backends.c: `walctl backends`.
 *
 * One line per registered backend, in name order, tab-separated so that
 * scripts can cut it: name, origin ("builtin", "runtime" or the plugin's
 * file), capabilities (comma-separated names of the WALIMPLS_CAP_* bits, "-"
 * for none) and the one-line description.  Problems met while collecting
 * backends (a duplicate name, a plugin refused: wal_registry_problem())
 * reach stderr through the library's log hook as warnings, one line each
 * naming the file and the reason, as they happen, for every command; -q
 * hides them.  They never change the exit code of `backends`.
 */
#include <getopt.h>
#include <stdio.h>

#include "walctl.h"

static const struct {
        uint32_t bit;
        const char *name;
} cap_names[] = {
        { WALIMPLS_CAP_PERSISTENT, "persistent" },
        { WALIMPLS_CAP_TRUNCATE, "truncate" },
        { WALIMPLS_CAP_FENCING, "fencing" },
        { WALIMPLS_CAP_LIST, "list" },
};

static void print_caps(uint32_t caps)
{
        bool any = false;
        for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++) {
                if (caps & cap_names[i].bit) {
                        printf("%s%s", any ? "," : "", cap_names[i].name);
                        any = true;
                        caps &= ~cap_names[i].bit;
                }
        }
        if (caps) {
                /* Bits newer than this walctl: show them rather than hide them. */
                printf("%s0x%x", any ? "," : "", (unsigned)caps);
                any = true;
        }
        if (!any)
                fputs("-", stdout);
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        (void)w;
        for (;;) {
                int c = walctl_getopt("backends", argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (walctl_no_operands("backends", argc, argv, optind))
                return WALCTL_EXIT_USAGE;

        size_t n = wal_registry_count();
        for (size_t i = 0; i < n; i++) {
                const struct walimpls_builder *b = wal_registry_at(i);
                if (!b)
                        continue;
                const char *origin = wal_registry_origin(b);
                printf("%s\t%s\t", b->name, origin ? origin : "unknown");
                print_caps(b->caps);
                printf("\t%s\n", b->description && *b->description ? b->description : "-");
        }
        return WALCTL_EXIT_OK;
}

const struct walctl_command walctl_cmd_backends = {
        .name = "backends",
        .args = "",
        .summary = "list the registered backends",
        .help = "List the registered backends, one line each, in name order, with four\n"
                "tab-separated fields:\n"
                "  NAME  ORIGIN  CAPABILITIES  DESCRIPTION\n"
                "ORIGIN is \"builtin\" (compiled in), \"runtime\" (added by the program) or\n"
                "the file of the plugin it came from.  CAPABILITIES is a comma-separated\n"
                "list of: persistent (data outlives the process), truncate (truncate\n"
                "deletes data), fencing (a newer term fences older writers), list (the\n"
                "channels can be listed); \"-\" for none.\n"
                "\n"
                "Plugins are loaded from the directories of $WAL_PLUGIN_PATH and of the\n"
                "plugin.path property.  A plugin refused (not a shared object, wrong\n"
                "interface version, no entry point, a name already taken) is reported\n"
                "on stderr as a warning naming its file and the reason.\n"
                "\n"
                "Example:\n"
                "  walctl backends | cut -f1\n",
        .flags = 0,
        .run = run,
};
