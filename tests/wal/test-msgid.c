/* SPDX-License-Identifier: MIT */
/*
 * tests/wal/test-msgid.c: message IDs (wal/wal-msgid.h, wal/msgid.c).
 *
 * The ordering truth table, text round trips at the edges of both halves,
 * the exact accepted grammar ("LO", "HI-LO", decimal, nothing else), and
 * argument checks: NULLs, WAL_MSGID_NONE, buffers too small by one.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-msgid.h>

Test(msgid, ordering_truth_table)
{
        const struct wal_msgid ids[] = {
                WAL_MSGID(1, 2), WAL_MSGID(1, 1), WAL_MSGID(2, 1), WAL_MSGID(2, 2),
        };
        /* Lexicographic on (hi, lo): rank of each entry above. */
        const int rank[] = { 1, 0, 2, 3 };
        for (size_t i = 0; i < 4; i++) {
                for (size_t j = 0; j < 4; j++) {
                        int want = rank[i] < rank[j] ? -1 : rank[i] > rank[j] ? 1 : 0;
                        int got = wal_msgid_cmp(ids[i], ids[j]);
                        int sign = got < 0 ? -1 : got > 0 ? 1 : 0;
                        cr_expect_eq(sign, want, "cmp((%lu,%lu),(%lu,%lu)) = %d",
                                     (unsigned long)ids[i].hi, (unsigned long)ids[i].lo,
                                     (unsigned long)ids[j].hi, (unsigned long)ids[j].lo,
                                     got);
                        cr_expect_eq(wal_msgid_eq(ids[i], ids[j]), i == j);
                }
        }
}

Test(msgid, ordering_across_hi)
{
        /* A larger hi wins whatever lo says. */
        cr_expect_lt(wal_msgid_cmp(WAL_MSGID(0, UINT64_MAX), WAL_MSGID(1, 0)), 0);
        cr_expect_gt(wal_msgid_cmp(WAL_MSGID(1, 0), WAL_MSGID(0, UINT64_MAX)), 0);
        cr_expect_lt(wal_msgid_cmp(WAL_MSGID(UINT64_MAX - 1, UINT64_MAX),
                                   WAL_MSGID(UINT64_MAX, 0)), 0);
        cr_expect_eq(wal_msgid_cmp(WAL_MSGID(7, 9), WAL_MSGID(7, 9)), 0);
        /* NONE sorts after every real ID. */
        cr_expect_gt(wal_msgid_cmp(WAL_MSGID_NONE, WAL_MSGID(UINT64_MAX, UINT64_MAX - 1)), 0);
        cr_expect(wal_msgid_is_none(WAL_MSGID_NONE));
        cr_expect_not(wal_msgid_is_none(WAL_MSGID(UINT64_MAX, 0)));
        cr_expect_not(wal_msgid_is_none(WAL_MSGID(0, UINT64_MAX)));
}

static void round_trip(struct wal_msgid id, const char *want)
{
        char buf[WAL_MSGID_STRLEN];
        int n = wal_msgid_format(id, buf, sizeof(buf));
        cr_assert_eq(n, (int)strlen(want), "format length %d for %s", n, want);
        cr_expect_str_eq(buf, want);
        struct wal_msgid back = WAL_MSGID(12345, 6789);
        cr_assert_eq(wal_msgid_parse(buf, &back), 0, "parse '%s'", buf);
        cr_expect(wal_msgid_eq(back, id), "'%s' parsed to (%lu,%lu)", buf,
                  (unsigned long)back.hi, (unsigned long)back.lo);
}

Test(msgid, format_parse_round_trip)
{
        round_trip(WAL_MSGID(0, 0), "0");
        round_trip(WAL_MSGID(0, 1), "1");
        round_trip(WAL_MSGID(0, UINT64_MAX), "18446744073709551615");
        round_trip(WAL_MSGID(0, UINT64_MAX - 1), "18446744073709551614");
        round_trip(WAL_MSGID(1, 0), "1-0");
        round_trip(WAL_MSGID(1700000000000ull, 3), "1700000000000-3");
        round_trip(WAL_MSGID(UINT64_MAX - 1, UINT64_MAX - 1),
                   "18446744073709551614-18446744073709551614");
        round_trip(WAL_MSGID(UINT64_MAX, UINT64_MAX - 1),
                   "18446744073709551615-18446744073709551614");
        round_trip(WAL_MSGID(UINT64_MAX - 1, UINT64_MAX),
                   "18446744073709551614-18446744073709551615");
}

Test(msgid, longest_text_fits_strlen)
{
        /* The longest real ID fills WAL_MSGID_STRLEN exactly (41 chars + NUL). */
        char buf[WAL_MSGID_STRLEN];
        int n = wal_msgid_format(WAL_MSGID(UINT64_MAX, UINT64_MAX - 1), buf, sizeof(buf));
        cr_expect_eq(n, WAL_MSGID_STRLEN - 1);
}

Test(msgid, zero_hi_forms)
{
        struct wal_msgid id;
        cr_assert_eq(wal_msgid_parse("0-5", &id), 0);
        cr_expect(wal_msgid_eq(id, WAL_MSGID(0, 5)));
        cr_assert_eq(wal_msgid_parse("5", &id), 0);
        cr_expect(wal_msgid_eq(id, WAL_MSGID(0, 5)));
        cr_assert_eq(wal_msgid_parse("0-0", &id), 0);
        cr_expect(wal_msgid_eq(id, WAL_MSGID(0, 0)));
        /* Leading zeros are still decimal. */
        cr_assert_eq(wal_msgid_parse("007-010", &id), 0);
        cr_expect(wal_msgid_eq(id, WAL_MSGID(7, 10)));
}

Test(msgid, garbage_is_rejected_and_ret_untouched)
{
        const char *bad[] = {
                "", "-1", "1-", "-", "a", "1a", "a1", "1-2-3", " 1", "1 ", "1- 2", "+1",
                "1-+2", "0x10", "1.5", "1--2", "1-a",
                "18446744073709551616",                      /* lo overflow */
                "18446744073709551616-0",                    /* hi overflow */
                "1-18446744073709551616",
                "99999999999999999999999",
                "18446744073709551615-18446744073709551615", /* NONE itself */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct wal_msgid id = WAL_MSGID(42, 43);
                cr_expect_eq(wal_msgid_parse(bad[i], &id), -EINVAL, "'%s' accepted", bad[i]);
                cr_expect(wal_msgid_eq(id, WAL_MSGID(42, 43)), "'%s' changed ret", bad[i]);
        }
}

Test(msgid, null_arguments)
{
        struct wal_msgid id;
        char buf[WAL_MSGID_STRLEN];
        cr_expect_eq(wal_msgid_parse(NULL, &id), -EINVAL);
        cr_expect_eq(wal_msgid_parse("1", NULL), -EINVAL);
        cr_expect_eq(wal_msgid_format(WAL_MSGID(0, 1), NULL, 10), -EINVAL);
        cr_expect_eq(wal_msgid_format(WAL_MSGID_NONE, buf, sizeof(buf)), -EINVAL);
}

Test(msgid, small_buffers)
{
        char buf[WAL_MSGID_STRLEN];
        /* "123-45" needs 7 bytes with its NUL. */
        memset(buf, 'X', sizeof(buf));
        cr_expect_eq(wal_msgid_format(WAL_MSGID(123, 45), buf, 6), -ENOSPC);
        cr_expect_eq(wal_msgid_format(WAL_MSGID(123, 45), buf, 7), 6);
        cr_expect_str_eq(buf, "123-45");
        cr_expect_eq(wal_msgid_format(WAL_MSGID(0, 0), buf, 1), -ENOSPC);
        cr_expect_eq(wal_msgid_format(WAL_MSGID(0, 0), buf, 0), -ENOSPC);
        cr_expect_eq(wal_msgid_format(WAL_MSGID(0, 0), buf, 2), 1);
        cr_expect_eq(wal_msgid_format(WAL_MSGID(UINT64_MAX, UINT64_MAX - 1), buf,
                                      WAL_MSGID_STRLEN - 1), -ENOSPC);
        /* The bytes past len are never written. */
        memset(buf, 'X', sizeof(buf));
        wal_msgid_format(WAL_MSGID(123456, 789), buf, 4);
        for (size_t i = 4; i < sizeof(buf); i++)
                cr_expect_eq(buf[i], 'X', "byte %zu written", i);
}
