/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-msgid.c: fuzz target for the message ID text parser
 * (wal/msgid.c), which reads IDs typed by users (`walctl read -o ID`).
 *
 * The input, cut at its first NUL, is parsed.  Accepted text must follow the
 * grammar (digits, at most one inner dash), and format(parse(text)) must
 * parse back to the same ID; rejected text must leave the result untouched.
 * Separately, the first 16 bytes taken as an ID must survive
 * format -> parse.  A violation aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wal/wal-msgid.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *text)
{
        fprintf(stderr, "fuzz-msgid: %s: '%s'\n", what, text);
        abort();
}

static void check_grammar(const char *s)
{
        size_t dashes = 0, n = strlen(s);
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '-') {
                        if (i == 0 || i == n - 1)
                                fail("accepted a leading or trailing dash", s);
                        dashes++;
                } else if (s[i] < '0' || s[i] > '9') {
                        fail("accepted a character that is not a digit", s);
                }
        }
        if (n == 0 || dashes > 1)
                fail("accepted an empty text or several dashes", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        struct wal_msgid id = WAL_MSGID(4, 2);
        int r = wal_msgid_parse(text, &id);
        char buf[WAL_MSGID_STRLEN];
        if (r == 0) {
                check_grammar(text);
                if (wal_msgid_is_none(id))
                        fail("parsed to WAL_MSGID_NONE", text);
                if (wal_msgid_format(id, buf, sizeof(buf)) < 0)
                        fail("cannot format a parsed ID", text);
                struct wal_msgid back;
                if (wal_msgid_parse(buf, &back) < 0 || !wal_msgid_eq(back, id))
                        fail("formatted ID does not parse back", text);
        } else {
                if (r != -EINVAL)
                        fail("unexpected error code", text);
                if (!wal_msgid_eq(id, WAL_MSGID(4, 2)))
                        fail("rejected text changed the result", text);
        }

        if (size >= 16) {
                struct wal_msgid raw;
                memcpy(&raw.hi, data, 8);
                memcpy(&raw.lo, data + 8, 8);
                int n = wal_msgid_format(raw, buf, sizeof(buf));
                if (wal_msgid_is_none(raw)) {
                        if (n != -EINVAL)
                                fail("formatted WAL_MSGID_NONE", "");
                } else {
                        struct wal_msgid back;
                        if (n < 0 || wal_msgid_parse(buf, &back) < 0 ||
                            !wal_msgid_eq(back, raw))
                                fail("raw ID does not round-trip", buf);
                }
        }
        free(text);
        return 0;
}
