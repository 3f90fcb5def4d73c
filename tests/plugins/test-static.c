/* SPDX-License-Identifier: MIT */
/*
 * tests/plugins/test-static.c: link-time registration in a program that
 * links libwal STATICALLY (libwal.a, built by registry/prelink-static.sh).
 *
 * The program brings three backends of its own: one defined in this file
 * (always linked), one in a static archive referenced through its anchor
 * (WAL_USE_BACKEND), and one in a static archive nothing references, which
 * a static link drops.  libwal.a's built-in backends must all be there
 * although nothing names them, and the built-in memory backend must work
 * end to end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <wal/wal.h>

static int t_build(const wal_config *cfg, struct walimpls_opener **ret, wal_error **reterr)
{
        (void)cfg;
        (void)ret;
        return wal_error_set(reterr, -EOPNOTSUPP, 0, "tstatic: a registration test");
}

static const struct walimpls_builder tstatic_builder = {
        .version = WALIMPLS_VERSION, .name = "tstatic",
        .description = "backend of the statically linked program",
        .caps = 0, .properties = NULL, .build = t_build,
};
WAL_REGISTER_BACKEND(tstatic_builder);

/* Keep static-anchored.c's object in the link. */
WAL_USE_BACKEND(tanchored);

static void expect_builtin(const char *name)
{
        const struct walimpls_builder *b = NULL;
        wal_error *e = NULL;
        int r = wal_registry_find(name, &b, &e);
        cr_assert_eq(r, 0, "%s: %s", name, wal_error_message(e));
        cr_expect_str_eq(wal_registry_origin(b), "builtin", "%s", name);
}

Test(static_link, program_backend_and_anchored_backend_are_registered)
{
        expect_builtin("tstatic");
        expect_builtin("tanchored");
        cr_expect_eq(wal_registry_problem_count(), 0, "%s", wal_registry_problem(0));
}

Test(static_link, unanchored_archive_backend_is_dropped)
{
        const struct walimpls_builder *b = NULL;
        cr_expect_eq(wal_registry_find("tunanchored", &b, NULL), -ENOENT,
                     "an unreferenced archive member was linked after all");
}

Test(static_link, every_builtin_backend_comes_with_libwal_a)
{
        static const char *const names[] = { BUILT_BACKENDS };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                expect_builtin(names[i]);
}

Test(static_link, memory_backend_round_trip)
{
        wal_opener *o = NULL;
        wal_error *e = NULL;
        cr_assert_eq(wal_opener_new("memory", NULL, &o, &e), 0, "%s", wal_error_message(e));
        wal *w = NULL;
        cr_assert_eq(wal_open(o, "static", 1, WAL_ACCESS_RW, &w, &e), 0, "%s",
                     wal_error_message(e));
        wal_msg *m = NULL, *written = NULL;
        cr_assert_eq(wal_msg_new(WAL_MSG_DATA, "hello", 5, &m), 0);
        cr_assert_eq(wal_append_wait(w, m, &written, &e), 0, "%s", wal_error_message(e));
        size_t len = 0;
        const char *p = wal_msg_payload(written, &len);
        cr_expect(len == 5 && memcmp(p, "hello", 5) == 0);
        cr_expect(!wal_msgid_is_none(wal_msg_id(written)));
        wal_msg_unref(written);
        wal_msg_unref(m);
        wal_close(w);
        wal_opener_close(o);
}
