/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-truncate.c: `walctl truncate CHANNEL ID`.
 *
 * Truncation needs a read-write handle, and opening one takes ownership at
 * a term; walctl_open_rw() joins the owner's current term (unless --term
 * says otherwise) so truncating never fences the channel's writer, and it
 * refuses to create a channel that does not exist (66).  An ID after the
 * channel's last ID is refused by wal_truncate() (-EINVAL, so 64) before
 * anything is cut: on Redis it would delete every record there is, so a
 * mistyped ID would empty the channel.  Prints nothing on success, like rm,
 * except on Kafka with kafkawal.truncate=retention (its default), where the
 * backend deletes nothing and status 0 would suggest otherwise: a warning
 * says so and names the setting that deletes.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "walctl.h"

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        for (;;) {
                int c = walctl_getopt("truncate", argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (argc - optind < 2)
                return walctl_usage_error("truncate", "expected CHANNEL ID");
        if (walctl_no_operands("truncate", argc, argv, optind + 2))
                return WALCTL_EXIT_USAGE;
        const char *channel = argv[optind];
        struct wal_msgid id;
        if (wal_msgid_parse(argv[optind + 1], &id) < 0)
                return walctl_usage_error("truncate", "'%s' is not an ID", argv[optind + 1]);

        wal_opener *o = NULL;
        wal *wl = NULL;
        int rc = walctl_opener(w, &o);
        if (!rc)
                rc = walctl_open_rw(w, o, channel, WALCTL_MUST_EXIST, &wl);
        if (!rc) {
                wal_error *err = NULL;
                int r = wal_truncate(wl, id, &err);
                if (r < 0) {
                        char what[300];
                        snprintf(what, sizeof(what), "truncate %s", channel);
                        rc = walctl_fail(what, r, err);
                }
        }
        const char *bname = rc ? NULL : wal_opener_backend(o);
        if (bname && strcmp(bname, "kafka") == 0) {
                const char *mode = wal_config_get(w->cfg, "kafkawal.truncate");
                if (!mode || strcmp(mode, "delete_records") != 0)
                        walctl_warn(w, "truncate %s: nothing was deleted: with "
                                    "kafkawal.truncate=retention (the default) the kafka "
                                    "backend leaves deletion to the topic's retention; "
                                    "-X kafkawal.truncate=delete_records deletes up to the ID",
                                    channel);
        }
        wal_close(wl);
        wal_opener_close(o);
        return rc;
}

const struct walctl_command walctl_cmd_truncate = {
        .name = "truncate",
        .args = "CHANNEL ID",
        .summary = "allow deleting everything up to and including ID",
        .help = "Tell the backend that every message of CHANNEL up to and including ID\n"
                "may be deleted.  When the space is given back is up to the backend (the\n"
                "local backend drops whole segments); readers may still see such\n"
                "messages until then.  The channel is opened at its owner's term (or\n"
                "--term), so the writer is not fenced.  A channel that does not exist\n"
                "exits with status 66; a backend that cannot truncate, with 69; an ID\n"
                "after the channel's last ID (see `walctl info`), with 64, cutting\n"
                "nothing.  On Kafka, kafkawal.truncate=retention (the default) deletes\n"
                "nothing (the topic's retention does; a warning says so); with\n"
                "kafkawal.truncate=delete_records the brokers delete up to the ID.\n"
                "\n"
                "Example:\n"
                "  walctl truncate orders \"$(walctl info orders | awk -F'\\t' \\\n"
                "          '$1 == \"last_id\" { print $2 }')\"\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
