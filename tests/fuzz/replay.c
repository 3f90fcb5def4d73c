/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/replay.c: run a fuzz target over stored inputs, without
 * libFuzzer.
 *
 * Linked with one fuzz target (a file defining LLVMFuzzerTestOneInput), it
 * feeds it every regular file of the directories (or the files) named on
 * the command line, in name order, and prints one TAP line per input.  A
 * crash or abort in the target ends the process, which fails the test; a
 * path that cannot be read, or no input at all, fails too, so an empty or
 * misplaced corpus is never a silent pass.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct inputs {
        char **paths;
        size_t n, cap;
};

static int add(struct inputs *in, const char *path)
{
        if (in->n == in->cap) {
                size_t cap = in->cap ? in->cap * 2 : 64;
                char **np = realloc(in->paths, cap * sizeof(*np));
                if (!np)
                        return -ENOMEM;
                in->paths = np;
                in->cap = cap;
        }
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        in->paths[in->n++] = p;
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add @path, or every regular file directly inside it. */
static int collect(struct inputs *in, const char *path)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return add(in, path);
        DIR *d = opendir(path);
        if (!d) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char *full;
                if (asprintf(&full, "%s/%s", path, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
                        r = add(in, full);
                free(full);
        }
        closedir(d);
        return r;
}

/* Read all of @path into a buffer of exactly its size. */
static int slurp(const char *path, uint8_t **ret, size_t *len)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return -errno;
        size_t cap = 4096, n = 0;
        uint8_t *buf = malloc(cap);
        while (buf) {
                size_t got = fread(buf + n, 1, cap - n, f);
                n += got;
                if (n < cap)
                        break;
                uint8_t *nb = realloc(buf, cap *= 2);
                if (!nb) {
                        free(buf);
                        buf = NULL;
                        break;
                }
                buf = nb;
        }
        int err = ferror(f);
        fclose(f);
        if (!buf)
                return -ENOMEM;
        if (err) {
                free(buf);
                return -EIO;
        }
        /* Exact size, so ASan sees a read one past the input. */
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact) {
                free(buf);
                return -ENOMEM;
        }
        memcpy(exact, buf, n);
        free(buf);
        *ret = exact;
        *len = n;
        return 0;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
                return 2;
        }
        struct inputs in = { 0 };
        for (int i = 1; i < argc; i++)
                if (collect(&in, argv[i]) < 0)
                        return 1;
        if (in.n == 0) {
                fprintf(stderr, "replay: no inputs found\n");
                return 1;
        }
        qsort(in.paths, in.n, sizeof(*in.paths), cmp_str);
        printf("TAP version 13\n1..%zu\n", in.n);
        int failed = 0;
        for (size_t i = 0; i < in.n; i++) {
                uint8_t *data = NULL;
                size_t len = 0;
                int r = slurp(in.paths[i], &data, &len);
                if (r < 0) {
                        printf("not ok %zu - %s: %s\n", i + 1, in.paths[i], strerror(-r));
                        failed = 1;
                } else {
                        fflush(stdout);
                        LLVMFuzzerTestOneInput(data, len);
                        free(data);
                        printf("ok %zu - %s (%zu bytes)\n", i + 1, in.paths[i], len);
                }
                free(in.paths[i]);
        }
        free(in.paths);
        return failed;
}
