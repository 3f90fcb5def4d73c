/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/test-populate.c: walu_populate() (utility/walu.h) faults
 * every page of its range in and changes no byte, by either of its ways
 * (madvise, and the per-page touch it takes when madvise refuses, reached
 * here through a range that does not start on a page boundary).
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "utility/walu.h"

#define PAGES 16

static size_t page(void)
{
        long pg = sysconf(_SC_PAGESIZE);
        return pg > 0 ? (size_t)pg : 4096;
}

/* How many of the @n pages from @p are resident. */
static size_t resident(unsigned char *p, size_t n)
{
        unsigned char vec[PAGES];
        cr_assert_eq(mincore(p, n * page(), vec), 0);
        size_t r = 0;
        for (size_t i = 0; i < n; i++)
                r += vec[i] & 1;
        return r;
}

/* A fresh mapping of PAGES pages with bytes written on pages 3 and 9 only. */
static unsigned char *fresh(void)
{
        unsigned char *p = mmap(NULL, PAGES * page(), PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(p, MAP_FAILED);
        memset(p + 3 * page(), 0xa5, page());
        p[9 * page() + 1] = 0x5a;
        p[9 * page()] = 0x7f;
        cr_assert_eq(resident(p, PAGES), 2u, "a fresh mapping has only its written pages");
        return p;
}

static void check_contents(unsigned char *p)
{
        for (size_t i = 0; i < PAGES * page(); i++) {
                unsigned char want = 0;
                if (i / page() == 3)
                        want = 0xa5;
                else if (i == 9 * page())
                        want = 0x7f;
                else if (i == 9 * page() + 1)
                        want = 0x5a;
                cr_assert_eq(p[i], want, "byte %zu changed to %#x", i, p[i]);
        }
}

Test(populate, aligned_range_is_faulted_in_unchanged)
{
        unsigned char *p = fresh();
        walu_populate(p, PAGES * page());
        cr_expect_eq(resident(p, PAGES), (size_t)PAGES);
        check_contents(p);
        munmap(p, PAGES * page());
}

Test(populate, unaligned_range_is_touched_in_unchanged)
{
        unsigned char *p = fresh();
        /* from the middle of page 0 to the middle of the last page */
        walu_populate(p + page() / 2, (PAGES - 1) * page());
        cr_expect_eq(resident(p, PAGES), (size_t)PAGES);
        check_contents(p);
        munmap(p, PAGES * page());
}

Test(populate, part_of_a_mapping_leaves_the_rest_alone)
{
        unsigned char *p = fresh();
        walu_populate(p + 4 * page(), 4 * page());
        /* pages 3 and 9 written, 4-7 populated */
        cr_expect_eq(resident(p, PAGES), 6u);
        cr_expect_eq(resident(p + 4 * page(), 4), 4u);
        check_contents(p);
        munmap(p, PAGES * page());
}
