/* SPDX-License-Identifier: MIT */
/*
 * tests/wal/test-error.c: the error object (wal/wal-error.h, wal/error.c).
 *
 * NULL-safe accessors, code normalisation, "first error wins" in
 * wal_error_set, prefixing, deep copies, and the library's own strerror
 * texts.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include <wal/wal-error.h>

Test(error, null_accessors)
{
        cr_expect_eq(wal_error_code(NULL), 0);
        cr_expect_str_eq(wal_error_message(NULL), "no error");
        cr_expect_not(wal_error_is_retriable(NULL));
        cr_expect_not(wal_error_is_fatal(NULL));
        cr_expect_null(wal_error_copy(NULL));
        wal_error_free(NULL);
        wal_error_prefix(NULL, "ctx: ");
        wal_error *none = NULL;
        wal_error_prefix(&none, "ctx: ");
        cr_expect_null(none);
}

Test(error, new_and_flags)
{
        wal_error *e = wal_error_new(-ETIMEDOUT, WAL_ERROR_RETRIABLE, "waited %d ms", 250);
        cr_assert_not_null(e);
        cr_expect_eq(wal_error_code(e), -ETIMEDOUT);
        cr_expect_str_eq(wal_error_message(e), "waited 250 ms");
        cr_expect(wal_error_is_retriable(e));
        cr_expect_not(wal_error_is_fatal(e));
        wal_error_free(e);

        e = wal_error_new(-EIO, WAL_ERROR_FATAL | 0x100, "disk");
        cr_expect(wal_error_is_fatal(e));
        cr_expect_not(wal_error_is_retriable(e));
        wal_error_free(e);
}

Test(error, code_normalisation)
{
        wal_error *e = wal_error_new(EINVAL, 0, "positive");
        cr_expect_eq(wal_error_code(e), -EINVAL);
        wal_error_free(e);
        e = wal_error_new(0, 0, "zero");
        cr_expect_eq(wal_error_code(e), -EIO);
        wal_error_free(e);
        cr_expect_eq(wal_error_set(NULL, ENOENT, 0, "x"), -ENOENT);
        cr_expect_eq(wal_error_set(NULL, 0, 0, "x"), -EIO);
}

Test(error, set_keeps_first_error)
{
        wal_error *e = NULL;
        cr_expect_eq(wal_error_set(&e, -ENOENT, 0, "inner: %s", "no such channel"), -ENOENT);
        cr_assert_not_null(e);
        /* The outer call reports its own code but keeps the inner detail. */
        cr_expect_eq(wal_error_set(&e, -EINVAL, WAL_ERROR_FATAL, "outer"), -EINVAL);
        cr_expect_eq(wal_error_code(e), -ENOENT);
        cr_expect_str_eq(wal_error_message(e), "inner: no such channel");
        cr_expect_not(wal_error_is_fatal(e));
        wal_error_free(e);
}

Test(error, set_without_reterr_returns_code)
{
        cr_expect_eq(wal_error_set(NULL, -ESTALE, 0, "fenced by term %d", 3), -ESTALE);
}

Test(error, prefix)
{
        wal_error *e = NULL;
        wal_error_set(&e, -EBADMSG, 0, "bad frame at %d", 4096);
        wal_error_prefix(&e, "segment %s: ", "000001.log");
        cr_expect_str_eq(wal_error_message(e), "segment 000001.log: bad frame at 4096");
        wal_error_prefix(&e, "opening %s: ", "orders");
        cr_expect_str_eq(wal_error_message(e),
                         "opening orders: segment 000001.log: bad frame at 4096");
        cr_expect_eq(wal_error_code(e), -EBADMSG);
        wal_error_free(e);
}

Test(error, copy_is_deep)
{
        wal_error *e = wal_error_new(-ECONNREFUSED, WAL_ERROR_RETRIABLE, "redis at %s",
                                     "127.0.0.1:1");
        wal_error *c = wal_error_copy(e);
        cr_assert_not_null(c);
        cr_expect_neq(c, e);
        wal_error_prefix(&e, "changed: ");
        wal_error_free(e);
        /* The copy is intact after the original changed and was freed. */
        cr_expect_eq(wal_error_code(c), -ECONNREFUSED);
        cr_expect(wal_error_is_retriable(c));
        cr_expect_str_eq(wal_error_message(c), "redis at 127.0.0.1:1");
        wal_error_free(c);
}

Test(error, strerror_texts)
{
        cr_expect_str_eq(wal_strerror(-ESTALE), "fenced: a newer term owns the channel");
        cr_expect_str_eq(wal_strerror(0), "success");
        cr_expect_str_eq(wal_strerror(-EBADMSG), "corrupt or undecodable data");
        /* Others fall back to the C library; never NULL, never empty. */
        const char *s = wal_strerror(-EACCES);
        cr_assert_not_null(s);
        cr_expect_str_eq(s, strerror(EACCES));
        cr_expect_str_eq(wal_strerror(-100000), "unknown error");
        cr_expect_str_eq(wal_strerror(12), "unknown error");
}

Test(error, empty_message_is_kept)
{
        wal_error *e = wal_error_new(-ESTALE, 0, "%s", "");
        cr_expect_str_eq(wal_error_message(e), "");
        wal_error_free(e);
}
