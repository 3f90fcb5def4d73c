/* SPDX-License-Identifier: MIT */
/*
 * tests/utility/fuzz-envelope-diff.c: differential fuzz target for the
 * envelope decoders.  Every input goes through the hand-written decoder and
 * the protobuf-c based reference (envelope-diff.h); any difference in what
 * they accept, refuse, report or build aborts, which the fuzzer reports.
 *
 * Built as a libFuzzer binary with -Dfuzz=true and clang; always built as
 * a replay over tests/fuzz/corpus/envelope (test 'envelope-diff-corpus').
 */
#include <stdint.h>
#include <stdlib.h>

#include "envelope-diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (ed_check_input(data, size, NULL))
                abort();
        return 0;
}
