/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-info.c: `walctl info CHANNEL`.
 *
 * Opens the channel read-only (so it never fences a writer, and a channel
 * that does not exist is 66, not created) and prints wal_info(): one
 * "KEY<TAB>VALUE" line per field, "-" where the backend does not know, or
 * with --json one object whose unknown fields are null.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "walctl.h"

static void id_text(struct wal_msgid id, char *buf, size_t len)
{
        if (wal_msgid_is_none(id) || wal_msgid_format(id, buf, len) < 0)
                snprintf(buf, len, "-");
}

static void print_text(const struct wal_info *in)
{
        char first[WAL_MSGID_STRLEN], last[WAL_MSGID_STRLEN];
        id_text(in->first_id, first, sizeof(first));
        id_text(in->last_id, last, sizeof(last));
        walctl_out_printf("channel\t%s\nfirst_id\t%s\nlast_id\t%s\n", in->channel, first, last);
        if (in->count >= 0)
                walctl_out_printf("count\t%" PRId64 "\n", in->count);
        else
                walctl_out_puts("count\t-\n");
        if (in->bytes >= 0)
                walctl_out_printf("bytes\t%" PRId64 "\n", in->bytes);
        else
                walctl_out_puts("bytes\t-\n");
        if (in->owner_term >= 0)
                walctl_out_printf("term\t%" PRId64 "\n", in->owner_term);
        else
                walctl_out_puts("term\t-\n");
        walctl_out_printf("durability\t%s\n", in->durability ? in->durability : "unknown");
}

static void json_id(const char *name, struct wal_msgid id)
{
        char text[WAL_MSGID_STRLEN];
        if (wal_msgid_is_none(id) || wal_msgid_format(id, text, sizeof(text)) < 0)
                walctl_out_printf(",\"%s\":null", name);
        else
                walctl_out_printf(",\"%s\":\"%s\"", name, text);
}

static void json_int(const char *name, int64_t v)
{
        if (v >= 0)
                walctl_out_printf(",\"%s\":%" PRId64, name, v);
        else
                walctl_out_printf(",\"%s\":null", name);
}

static void print_json(const struct wal_info *in)
{
        walctl_out_puts("{\"v\":1,\"channel\":");
        walctl_json_cstr(in->channel);
        json_id("first_id", in->first_id);
        json_id("last_id", in->last_id);
        json_int("count", in->count);
        json_int("bytes", in->bytes);
        json_int("term", in->owner_term);
        walctl_out_puts(",\"durability\":");
        walctl_json_cstr(in->durability ? in->durability : "unknown");
        walctl_out_puts("}\n");
}

static int run(struct walctl *w, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "json", no_argument, NULL, 'J' },
                { NULL, 0, NULL, 0 },
        };
        bool json = false;
        for (;;) {
                int c = walctl_getopt("info", argc, argv, "J", longopts);
                if (c == -1)
                        break;
                if (c != 'J')
                        return WALCTL_EXIT_USAGE;
                json = true;
        }
        if (optind >= argc)
                return walctl_usage_error("info", "no channel given");
        if (walctl_no_operands("info", argc, argv, optind + 1))
                return WALCTL_EXIT_USAGE;
        const char *channel = argv[optind];

        wal_opener *o = NULL;
        wal *wl = NULL;
        int rc = walctl_opener(w, &o);
        if (!rc)
                rc = walctl_open_ro(w, o, channel, &wl);
        if (!rc) {
                struct wal_info in;
                wal_error *err = NULL;
                int r = wal_info(wl, &in, &err);
                if (r < 0) {
                        rc = walctl_fail(channel, r, err);
                } else {
                        if (json)
                                print_json(&in);
                        else
                                print_text(&in);
                        rc = walctl_out_finish("info");
                }
        }
        wal_close(wl);
        wal_opener_close(o);
        return rc;
}

const struct walctl_command walctl_cmd_info = {
        .name = "info",
        .args = "CHANNEL",
        .summary = "describe a channel: IDs, count, bytes, term, durability",
        .help = "Describe CHANNEL, one tab-separated KEY VALUE line each:\n"
                "  channel     the name\n"
                "  first_id    the earliest retained ID\n"
                "  last_id     the latest ID written\n"
                "  count       retained messages (time ticks included)\n"
                "  bytes       retained bytes\n"
                "  term        the term that owns the channel now\n"
                "  durability  what an acknowledged append survives, as the backend\n"
                "              says (\"unknown\" if it does not)\n"
                "\"-\" stands for a value the backend does not know (an empty channel\n"
                "has no IDs).  A channel that does not exist exits with status 66.\n"
                "\n"
                "Options:\n"
                "  -J, --json             one JSON object instead, unknown values null:\n"
                "                         {\"v\":1,\"channel\":C,\"first_id\":ID,\"last_id\":ID,\n"
                "                          \"count\":N,\"bytes\":N,\"term\":N,\"durability\":D}\n"
                "\n"
                "Example:\n"
                "  walctl info orders | awk -F'\\t' '$1 == \"last_id\" { print $2 }'\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run,
};
