/* SPDX-License-Identifier: MIT */
/*
 * utility/populate.c: walu_populate() (utility/walu.h), shared by the
 * message arenas, the write-ahead cache's rings and the memory backend's
 * entry array, each of which faults its pages in ahead of use.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "utility/walu.h"

void walu_populate(void *p, size_t len)
{
        if (!p || !len)
                return;
#ifdef MADV_POPULATE_WRITE
        if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
                return;
#endif
        long pg = sysconf(_SC_PAGESIZE);
        size_t step = pg > 0 ? (size_t)pg : 4096;
        /* From @p, then from each following page's start. */
        unsigned char *b = p, *end = b + len;
        for (unsigned char *q = b; q < end;
             q = (unsigned char *)(((uintptr_t)q & ~(uintptr_t)(step - 1)) + step))
                __atomic_fetch_or(q, 0, __ATOMIC_RELAXED);
}
