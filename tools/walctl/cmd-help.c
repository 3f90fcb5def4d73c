/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-help.c: `walctl help [COMMAND]`.
 *
 * Prints the global help, or a command's, on stdout.  It needs no
 * configuration, so it runs even when the configuration is broken (the help
 * is what a user with a broken configuration wants).
 */
#include <getopt.h>
#include <stdio.h>

#include "walctl.h"

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        (void)w;
        for (;;) {
                int c = walctl_getopt("help", argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (optind >= argc) {
                walctl_print_global_help();
                return WALCTL_EXIT_OK;
        }
        if (walctl_no_operands("help", argc, argv, optind + 1))
                return WALCTL_EXIT_USAGE;
        const struct walctl_command *c = walctl_find_command(argv[optind]);
        if (!c)
                return walctl_usage_error("help", "unknown command '%s'", argv[optind]);
        walctl_print_command_help(c);
        return WALCTL_EXIT_OK;
}

const struct walctl_command walctl_cmd_help = {
        .name = "help",
        .args = "[COMMAND]",
        .summary = "show the help of walctl or of one command",
        .help = "Show the help of walctl, or of COMMAND (the same as\n"
                "`walctl COMMAND --help`).\n",
        .flags = WALCTL_CMD_NO_SETUP,
        .run = run,
};
