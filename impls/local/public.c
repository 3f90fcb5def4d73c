/* SPDX-License-Identifier: MIT */
/*
 * impls/local/public.c: the public face (wal/wal-local.h) of the local
 * backend's verify and repair, for walctl and other programs that may use
 * only the installed headers.  A thin wrapper: it checks the arguments,
 * builds the channel directory path the backend uses (<dir>/<channel>),
 * calls local_verify()/local_repair() and copies their result into the
 * public struct, whose layout does not depend on local.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <wal/wal-local.h>
#include <walimpls/walimpls.h>
#include "local.h"

static int chan_path(const char *dir, const char *channel, char *buf, size_t len,
                     wal_error **reterr)
{
        if (!dir || !*dir || !channel)
                return wal_error_set(reterr, -EINVAL, 0, "local: NULL or empty argument");
        if (!walimpls_channel_name_valid(channel))
                return wal_error_set(reterr, -EINVAL, 0,
                                     "channel \"%.64s\" is not a valid name (1..200 bytes of "
                                     "[A-Za-z0-9._-], not starting with '.' or '-')", channel);
        if ((size_t)snprintf(buf, len, "%s/%s", dir, channel) >= len)
                return wal_error_set(reterr, -ENAMETOOLONG, 0, "local: path of %s too long",
                                     channel);
        struct stat st;
        if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
                return wal_error_set(reterr, -ENOENT, 0, "no channel \"%s\" in %s", channel,
                                     dir);
        return 0;
}

static void to_public(const struct local_fault *f, struct wal_local_fault *ret)
{
        *ret = (struct wal_local_fault){
                .kind = (enum wal_local_fault_kind)f->kind,
                .kind_name = local_fault_kind_name(f->kind),
                .offset = f->offset,
                .lsn = f->lsn,
                .first_lsn = f->first_lsn,
                .last_lsn = f->last_lsn,
                .segments = f->segments,
        };
        if (f->kind != LOCAL_FAULT_NONE)
                snprintf(ret->segment, sizeof(ret->segment), "%s", f->segment);
}

WAL_EXPORT int wal_local_verify(const char *dir, const char *channel,
                                struct wal_local_fault *ret, wal_error **reterr)
{
        char path[4096];
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "local: NULL argument");
        int r = chan_path(dir, channel, path, sizeof(path), reterr);
        if (r < 0)
                return r;
        struct local_fault f;
        r = local_verify(path, &f, reterr);
        if (r < 0)
                return r;
        to_public(&f, ret);
        return 0;
}

WAL_EXPORT int wal_local_repair(const char *dir, const char *channel,
                                struct wal_local_fault *ret, wal_error **reterr)
{
        char path[4096];
        if (!ret)
                return wal_error_set(reterr, -EINVAL, 0, "local: NULL argument");
        int r = chan_path(dir, channel, path, sizeof(path), reterr);
        if (r < 0)
                return r;
        struct local_fault f;
        r = local_repair(path, &f, reterr);
        if (r < 0)
                return r;
        to_public(&f, ret);
        if (f.kind == LOCAL_FAULT_NONE)
                return 0;
        /* Which side file local_repair wrote: a cut tail or the whole segment. */
        char side[4300];
        struct stat st;
        snprintf(side, sizeof(side), "%s/%s.cut-%" PRIu64, path, f.segment, f.offset);
        if (stat(side, &st) == 0) {
                snprintf(ret->cut_file, sizeof(ret->cut_file), "%s.cut-%" PRIu64, f.segment,
                         f.offset);
                return 0;
        }
        snprintf(side, sizeof(side), "%s/%s.cut", path, f.segment);
        if (stat(side, &st) == 0)
                snprintf(ret->cut_file, sizeof(ret->cut_file), "%s.cut", f.segment);
        return 0;
}
