/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-channels.c: `walctl channels`.
 *
 * One channel name per line, in the order the backend lists them (none in
 * particular), straight from wal_opener_list_channels().  A backend that
 * cannot list (-EOPNOTSUPP) exits 69 with a message naming it.  On the local
 * backend, a local.dir that does not exist lists nothing, as it should, but
 * also says so on standard error: it is more often a mistyped path than an
 * empty data directory.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "walctl.h"

static int print_channel(void *arg, const char *channel)
{
        (void)arg;
        walctl_out_puts(channel);
        walctl_out_putc('\n');
        /* Stop listing once nobody reads us any more. */
        return walctl_out_error() ? 1 : 0;
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        for (;;) {
                int c = walctl_getopt("channels", argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (walctl_no_operands("channels", argc, argv, optind))
                return WALCTL_EXIT_USAGE;

        wal_opener *o = NULL;
        int rc = walctl_opener(w, &o);
        if (rc)
                return rc;
        wal_error *err = NULL;
        int r = wal_opener_list_channels(o, print_channel, NULL, &err);
        if (r < 0)
                rc = walctl_fail("channels", r, err);
        else
                wal_error_free(err);
        const char *backend = wal_config_get(w->cfg, "backend");
        const char *dir = wal_config_get(w->cfg, "local.dir");
        struct stat st;
        if (r >= 0 && backend && strcmp(backend, "local") == 0 && dir && stat(dir, &st) < 0 &&
            errno == ENOENT)
                walctl_warn(w, "channels: local.dir %s does not exist: no channel was ever "
                            "written there", dir);
        int orc = walctl_out_finish("channels");
        wal_opener_close(o);
        return rc ? rc : orc;
}

const struct walctl_command walctl_cmd_channels = {
        .name = "channels",
        .args = "",
        .summary = "list the channels of the backend",
        .help = "List the channels the backend holds, one name per line, in no\n"
                "particular order.  A backend that cannot list its channels exits with\n"
                "status 69.  A local.dir that does not exist lists nothing (status 0)\n"
                "and is named in a warning on standard error (-q silences it).\n"
                "\n"
                "Example:\n"
                "  walctl -X local.dir=/var/lib/app/wal channels | sort\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
