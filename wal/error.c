/* SPDX-License-Identifier: MIT */
/*
 * wal/error.c: the error object (wal/wal-error.h).
 *
 * A code, flags and one heap string.  Allocation failure while reporting an
 * error must not lose the code, so every path that fails to allocate still
 * returns the code; only the detail is lost.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-error.h>

struct wal_error {
        int code;
        unsigned flags;
        char *message;
};

static int normalise_code(int code)
{
        if (code > 0)
                return -code;
        if (code == 0)
                return -EIO;
        return code;
}

wal_error *wal_error_newv(int code, unsigned flags, const char *fmt, va_list ap)
{
        wal_error *e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->code = normalise_code(code);
        e->flags = flags & (WAL_ERROR_RETRIABLE | WAL_ERROR_FATAL);
        if (!fmt || vasprintf(&e->message, fmt, ap) < 0)
                e->message = NULL;
        return e;
}

wal_error *wal_error_new(int code, unsigned flags, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        wal_error *e = wal_error_newv(code, flags, fmt, ap);
        va_end(ap);
        return e;
}

int wal_error_set(wal_error **reterr, int code, unsigned flags, const char *fmt, ...)
{
        code = normalise_code(code);
        if (reterr && !*reterr) {
                va_list ap;
                va_start(ap, fmt);
                *reterr = wal_error_newv(code, flags, fmt, ap);
                va_end(ap);
        }
        return code;
}

void wal_error_prefix(wal_error **reterr, const char *fmt, ...)
{
        if (!reterr || !*reterr || !fmt)
                return;
        wal_error *e = *reterr;
        char *prefix = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&prefix, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        char *joined = NULL;
        if (asprintf(&joined, "%s%s", prefix, e->message ? e->message : wal_strerror(e->code)) >= 0) {
                free(e->message);
                e->message = joined;
        }
        free(prefix);
}

int wal_error_code(const wal_error *e)
{
        return e ? e->code : 0;
}

const char *wal_error_message(const wal_error *e)
{
        if (!e)
                return "no error";
        return e->message ? e->message : wal_strerror(e->code);
}

bool wal_error_is_retriable(const wal_error *e)
{
        return e && (e->flags & WAL_ERROR_RETRIABLE);
}

bool wal_error_is_fatal(const wal_error *e)
{
        return e && (e->flags & WAL_ERROR_FATAL);
}

wal_error *wal_error_copy(const wal_error *e)
{
        if (!e)
                return NULL;
        return wal_error_new(e->code, e->flags, "%s", wal_error_message(e));
}

void wal_error_free(wal_error *e)
{
        if (!e)
                return;
        free(e->message);
        free(e);
}

const char *wal_strerror(int code)
{
        switch (code) {
        case 0: return "success";
        case -ESTALE: return "fenced: a newer term owns the channel";
        case -ESHUTDOWN: return "closed";
        case -ECANCELED: return "cancelled by close";
        case -EROFS: return "channel opened read-only";
        case -EMSGSIZE: return "record too large";
        case -EBADMSG: return "corrupt or undecodable data";
        case -ERANGE: return "position no longer exists (truncated)";
        case -ENOENT: return "no such name";
        case -EOPNOTSUPP: return "not supported by this backend";
        case -ETIMEDOUT: return "timed out";
        case -EINVAL: return "invalid argument";
        default:
                break;
        }
        if (code < 0 && code > -4096)
                return strerror(-code);
        return "unknown error";
}
