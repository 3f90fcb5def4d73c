/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-msgid.h: message IDs.
 *
 * A message ID is a backend-defined position, totally ordered within one
 * channel.  One fixed 128-bit pair, compared lexicographically, covers every
 * backend without allocation:
 *
 *   backend   hi                 lo
 *   local     0                  LSN
 *   redis     milliseconds       sequence      (the stream entry ID ms-seq)
 *   kafka     0                  offset
 *   memory    0                  sequence
 *
 * Text form: "LO" when hi is 0, else "HI-LO", both in decimal.  Parsing
 * accepts exactly these forms, so text round-trips and a Redis entry ID
 * reads as itself.  WAL_MSGID_NONE (both halves all ones) means "no ID".
 */
#ifndef WAL_MSGID_H
#define WAL_MSGID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wal/wal-common.h>

WAL_BEGIN_DECLS

struct wal_msgid {
        uint64_t hi;
        uint64_t lo;
};

#define WAL_MSGID_NONE ((struct wal_msgid){ UINT64_MAX, UINT64_MAX })
#define WAL_MSGID(h, l) ((struct wal_msgid){ (h), (l) })

/* Longest text form plus its NUL: two 20-digit numbers and a dash. */
#define WAL_MSGID_STRLEN 42

/** @returns <0, 0 or >0 as @p a orders before, equal to or after @p b. */
static inline int wal_msgid_cmp(struct wal_msgid a, struct wal_msgid b)
{
        if (a.hi != b.hi)
                return a.hi < b.hi ? -1 : 1;
        if (a.lo != b.lo)
                return a.lo < b.lo ? -1 : 1;
        return 0;
}

static inline bool wal_msgid_eq(struct wal_msgid a, struct wal_msgid b)
{
        return a.hi == b.hi && a.lo == b.lo;
}

static inline bool wal_msgid_is_none(struct wal_msgid id)
{
        return id.hi == UINT64_MAX && id.lo == UINT64_MAX;
}

/**
 * @brief Write the text form of @p id into @p buf.
 * @param buf  output (borrowed), NUL-terminated on success.
 * @param len  size of @p buf; WAL_MSGID_STRLEN is always enough.
 * @returns the length written (without the NUL), -ENOSPC if @p buf is too
 *          small, -EINVAL if @p buf is NULL or @p id is WAL_MSGID_NONE.
 * @remark Thread-safe.
 */
WAL_EXPORT int wal_msgid_format(struct wal_msgid id, char *buf, size_t len);

/**
 * @brief Parse the text form.
 * @param text  "LO" or "HI-LO", decimal, no sign, no spaces (borrowed).
 * @param ret   the ID, set only on success.
 * @returns 0, or -EINVAL for NULL, empty, garbage or out-of-range text.
 */
WAL_EXPORT int wal_msgid_parse(const char *text, struct wal_msgid *ret);

WAL_END_DECLS

#endif /* WAL_MSGID_H */
