/* SPDX-License-Identifier: MIT */
/*
 * wal/msgid.c: text form of message IDs (wal/wal-msgid.h).
 *
 * Format: "LO" when hi is 0, else "HI-LO"; decimal digits only.  The parser
 * accepts exactly what the formatter writes plus "0-LO" (a Redis entry ID
 * with a zero millisecond part), so every ID round-trips.
 */
#include <errno.h>
#include <stdio.h>

#include <wal/wal-msgid.h>

int wal_msgid_format(struct wal_msgid id, char *buf, size_t len)
{
        if (!buf || wal_msgid_is_none(id))
                return -EINVAL;
        int n;
        if (id.hi == 0)
                n = snprintf(buf, len, "%llu", (unsigned long long)id.lo);
        else
                n = snprintf(buf, len, "%llu-%llu", (unsigned long long)id.hi,
                             (unsigned long long)id.lo);
        if (n < 0 || (size_t)n >= len)
                return -ENOSPC;
        return n;
}

/* Parse one decimal uint64 at *p, advancing it; -EINVAL on no digits or overflow. */
static int parse_u64(const char **p, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;
        if (*s < '0' || *s > '9')
                return -EINVAL;
        while (*s >= '0' && *s <= '9') {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
                s++;
        }
        *p = s;
        *ret = v;
        return 0;
}

int wal_msgid_parse(const char *text, struct wal_msgid *ret)
{
        if (!text || !ret)
                return -EINVAL;
        const char *p = text;
        uint64_t a, b;
        if (parse_u64(&p, &a) < 0)
                return -EINVAL;
        struct wal_msgid id;
        if (*p == '\0') {
                id = WAL_MSGID(0, a);
        } else if (*p == '-') {
                p++;
                if (parse_u64(&p, &b) < 0 || *p != '\0')
                        return -EINVAL;
                id = WAL_MSGID(a, b);
        } else {
                return -EINVAL;
        }
        if (wal_msgid_is_none(id))
                return -EINVAL;
        *ret = id;
        return 0;
}
