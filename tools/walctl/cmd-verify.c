/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/cmd-verify.c: `walctl verify CHANNEL` and `walctl repair
 * CHANNEL`, the local backend's offline checks (the two commands share their
 * report, so they share this file).
 *
 * Both work on the files in <local.dir>/<channel> through wal/wal-local.h,
 * not through an opener: a damaged channel is exactly one the backend
 * refuses to open.  The report goes to standard output as tab-separated
 * KEY VALUE lines (like `info`); a fault also gets one line on standard
 * error and exit status 65, so scripts can test the status alone.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <wal/wal-local.h>

#include "walctl.h"

static void report(const char *channel, const struct wal_local_fault *f, bool repair)
{
        walctl_out_printf("channel\t%s\n", channel);
        walctl_out_printf("status\t%s\n", f->kind == WAL_LOCAL_FAULT_NONE ? "ok" : f->kind_name);
        if (f->kind == WAL_LOCAL_FAULT_BAD_TERM) {
                walctl_out_printf("segment\t%s\n", f->segment);  /* "term": the file */
        } else if (f->kind != WAL_LOCAL_FAULT_NONE) {
                walctl_out_printf("segment\t%s\noffset\t%" PRIu64 "\nlsn\t%" PRIu64 "\n",
                                  f->segment, f->offset, f->lsn);
        }
        if (f->last_lsn >= f->first_lsn && f->segments > 0)
                walctl_out_printf("valid\t%" PRIu64 "-%" PRIu64 "\n", f->first_lsn, f->last_lsn);
        else
                walctl_out_puts("valid\t-\n");
        walctl_out_printf("segments\t%" PRIu64 "\n", f->segments);
        if (repair && f->kind != WAL_LOCAL_FAULT_NONE)
                walctl_out_printf("cut_file\t%s\n", *f->cut_file ? f->cut_file : "-");
}

static int run_check(struct walctl *w, int argc, char **argv, bool repair)
{
        const char *cmd = repair ? "repair" : "verify";
        static const struct option longopts[] = { { NULL, 0, NULL, 0 } };
        for (;;) {
                int c = walctl_getopt(cmd, argc, argv, "", longopts);
                if (c == -1)
                        break;
                return WALCTL_EXIT_USAGE;
        }
        if (optind >= argc)
                return walctl_usage_error(cmd, "no channel given");
        if (walctl_no_operands(cmd, argc, argv, optind + 1))
                return WALCTL_EXIT_USAGE;
        const char *channel = argv[optind];
        const char *backend = wal_config_get(w->cfg, "backend");
        if (!backend || strcmp(backend, "local") != 0)
                return walctl_usage_error(cmd, "works on the local backend only (the "
                                          "backend is %s)", backend ? backend : "unset");
        const char *dir = wal_config_get(w->cfg, "local.dir");

        char what[300];
        snprintf(what, sizeof(what), "%s %s", cmd, channel);
        struct wal_local_fault f;
        wal_error *err = NULL;
        int r = repair ? wal_local_repair(dir, channel, &f, &err)
                       : wal_local_verify(dir, channel, &f, &err);
        if (r < 0)
                return walctl_fail(what, r, err);
        report(channel, &f, repair);
        int rc = walctl_out_finish(cmd);
        if (rc)
                return rc;
        if (f.kind == WAL_LOCAL_FAULT_NONE)
                return WALCTL_EXIT_OK;
        if (repair)
                return WALCTL_EXIT_OK;  /* the report says what was cut, and where */
        if (f.kind == WAL_LOCAL_FAULT_BAD_TERM) {
                walctl_error(what, "the term file (the owner's term) is damaged, so "
                             "read-write opens fail; `walctl repair %s` records the last "
                             "record's term in its place", channel);
                return WALCTL_EXIT_DATAERR;
        }
        walctl_error(what, "%s in segment %s at offset %" PRIu64 " (LSN %" PRIu64
                     " expected there); `walctl repair %s` cuts the log at that point",
                     f.kind_name, f.segment, f.offset, f.lsn, channel);
        return WALCTL_EXIT_DATAERR;
}

static int run_verify(struct walctl *w, int argc, char **argv)
{
        return run_check(w, argc, argv, false);
}

static int run_repair(struct walctl *w, int argc, char **argv)
{
        return run_check(w, argc, argv, true);
}

const struct walctl_command walctl_cmd_verify = {
        .name = "verify",
        .args = "CHANNEL",
        .summary = "(local) check every frame of a channel",
        .help = "Read every frame of CHANNEL in local.dir and check its CRC, header and\n"
                "LSN sequence, without opening the channel (so a channel the backend\n"
                "refuses to open can be checked).  Prints tab-separated KEY VALUE lines:\n"
                "  channel   the name\n"
                "  status    ok, or the first fault: torn-tail (the last frame was only\n"
                "            partly written; the next read-write open cuts it), bad-frame,\n"
                "            bad-header, lsn-gap, bad-term (the frames are intact but\n"
                "            the term file, the owner's term, is damaged)\n"
                "  segment   the segment file of the fault (in local.dir/CHANNEL);\n"
                "            \"term\" for bad-term, which has no offset or lsn line\n"
                "  offset    its byte offset in that file\n"
                "  lsn       the LSN expected there\n"
                "  valid     the LSNs of the intact records before it (FIRST-LAST)\n"
                "  segments  segment files seen\n"
                "Exit status 65 when there is a fault, 66 when the channel does not\n"
                "exist.  The local backend only.\n"
                "\n"
                "Example:\n"
                "  walctl -X local.dir=/var/lib/app/wal verify orders || walctl repair orders\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run_verify,
};

const struct walctl_command walctl_cmd_repair = {
        .name = "repair",
        .args = "CHANNEL",
        .summary = "(local) cut a channel at its first fault, saving what is cut",
        .help = "Cut CHANNEL in local.dir at its first fault (see `walctl verify`).  The\n"
                "bytes cut from the faulty segment are first copied to the side file\n"
                "SEGMENT.cut-OFFSET in the channel's directory (or the whole segment is\n"
                "renamed SEGMENT.cut when none of it is valid), later segments are renamed\n"
                "NAME.cut, and everything is fsynced.  The records before the fault stay.\n"
                "A damaged term file is kept as term.cut and replaced by the term of the\n"
                "last record (terms never decrease along a local log), or removed when no\n"
                "record is left.\n"
                "Prints the report of verify plus \"cut_file\".  A clean channel is left\n"
                "alone.  Fails (status 69) while a writer has the channel open.  The local\n"
                "backend only.\n",
        .flags = WALCTL_CMD_USES_BACKEND,
        .run = run_repair,
};
