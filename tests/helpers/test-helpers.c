/* SPDX-License-Identifier: MIT */
/*
 * tests/helpers/test-helpers.c: the shared test helpers themselves.
 *
 * Other suites trust these to make and remove scratch directories, find
 * ports and name channels, so they get their own checks: removal is
 * complete and never follows a symlink out of the tree, ports are bindable,
 * names are valid channel names and differ, and every fixture row names a
 * backend this build registers.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <walimpls/walimpls.h>
#include <wal/wal-registry.h>

#include "t-helpers.h"

static void touch(const char *dir, const char *name)
{
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0, "create %s: %s", p, strerror(errno));
        cr_assert_eq(write(fd, "x", 1), 1);
        close(fd);
}

Test(helpers, tmpdir_is_made_and_removed_completely)
{
        char *d = NULL;
        cr_assert_eq(t_tmpdir_new("helpers", &d), 0);
        struct stat st;
        cr_assert_eq(stat(d, &st), 0);
        cr_assert(S_ISDIR(st.st_mode));
        const char *base = getenv("TMPDIR");
        if (!base || !*base)
                base = "/tmp";
        cr_assert_eq(strncmp(d, base, strlen(base)), 0, "%s not under %s", d, base);
        cr_assert_not_null(strstr(d, "/helpers-"));

        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/a/b/c", d);
        char a[4096], ab[4096];
        snprintf(a, sizeof(a), "%s/a", d);
        snprintf(ab, sizeof(ab), "%s/a/b", d);
        cr_assert_eq(mkdir(a, 0700), 0);
        cr_assert_eq(mkdir(ab, 0700), 0);
        cr_assert_eq(mkdir(sub, 0700), 0);
        touch(d, "top");
        touch(a, "mid");
        touch(sub, "deep");
        cr_assert_eq(t_rm_rf(d), 0);
        cr_assert_eq(stat(d, &st), -1, "%s still exists", d);
        cr_assert_eq(errno, ENOENT);
        /* A missing path is not an error. */
        cr_assert_eq(t_rm_rf(d), 0);
        cr_assert_eq(t_rm_rf(NULL), -EINVAL);
        free(d);
}

Test(helpers, rm_rf_does_not_follow_symlinks)
{
        char *outside = NULL, *tree = NULL;
        cr_assert_eq(t_tmpdir_new("outside", &outside), 0);
        cr_assert_eq(t_tmpdir_new("tree", &tree), 0);
        touch(outside, "keep");
        char link[4096];
        snprintf(link, sizeof(link), "%s/link", tree);
        cr_assert_eq(symlink(outside, link), 0);
        cr_assert_eq(t_rm_rf(tree), 0);
        char keep[4096];
        snprintf(keep, sizeof(keep), "%s/keep", outside);
        struct stat st;
        cr_assert_eq(stat(keep, &st), 0, "rm_rf followed a symlink and deleted %s", keep);
        cr_assert_eq(t_rm_rf(outside), 0);
        free(outside);
        free(tree);
}

Test(helpers, free_port_is_bindable)
{
        int port = t_free_port();
        cr_assert_gt(port, 0, "t_free_port: %s", strerror(-port));
        cr_assert_lt(port, 65536);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                .sin_port = htons((uint16_t)port),
        };
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %d: %s", port,
                     strerror(errno));
        close(fd);
}

Test(helpers, unique_names_are_valid_and_differ)
{
        char a[64], b[64];
        cr_assert_eq(t_unique_name("chan", a, sizeof(a)), 0);
        cr_assert_eq(t_unique_name("chan", b, sizeof(b)), 0);
        cr_assert_eq(strlen(a), strlen("chan_") + 8);
        cr_assert_eq(strncmp(a, "chan_", 5), 0);
        cr_assert_str_neq(a, b);
        cr_assert(walimpls_channel_name_valid(a), "'%s' is not a valid channel name", a);
        char small[8];
        cr_assert_eq(t_unique_name("chan", small, sizeof(small)), -ENOSPC);
        cr_assert_eq(t_unique_name(NULL, a, sizeof(a)), -EINVAL);
}

Test(helpers, clock_and_sleep)
{
        uint64_t t0 = t_now_ms();
        t_sleep_ms(50);
        uint64_t el = t_now_ms() - t0;
        cr_assert_geq(el, 50);
        cr_assert_lt(el, 5000);
}

Test(helpers, fixture_rows_name_registered_backends)
{
        const struct t_backend_fixture *m = t_backend_fixture_find("memory");
        cr_assert_not_null(m, "the memory row is missing");
        cr_assert_null(m->teardown, "memory starts nothing: no teardown");
        cr_assert_null(t_backend_fixture_find("no-such-backend"));
        cr_assert_null(t_backend_fixture_find(NULL));
        size_t n = t_backend_fixture_count();
        cr_assert_geq(n, 1);
        cr_assert_null(t_backend_fixture_at(n));
        for (size_t i = 0; i < n; i++) {
                const struct t_backend_fixture *f = t_backend_fixture_at(i);
                cr_assert_not_null(f);
                cr_assert_eq(t_backend_fixture_find(f->name), f, "duplicate row '%s'", f->name);
                const struct walimpls_builder *b = NULL;
                wal_error *e = NULL;
                int r = wal_registry_find(f->name, &b, &e);
                cr_assert_eq(r, 0, "fixture row '%s' names no registered backend: %s", f->name,
                             wal_error_message(e));
        }
}
