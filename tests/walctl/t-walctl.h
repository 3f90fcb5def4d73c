/* SPDX-License-Identifier: MIT */
/*
 * tests/walctl/t-walctl.h: helpers of the walctl data-command tests: run
 * the real binary with input on stdin, run it in the background with its
 * stdout on a pipe, make and remove temporary data directories, and a small
 * strict JSON parser to read walctl's JSON lines back.
 */
#ifndef T_WALCTL_H
#define T_WALCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct t_out {
        int code;      /* exit status, or 128 + signal */
        char *out;     /* stdout, NUL-terminated (may hold NULs), owned */
        size_t out_len;
        char *err;     /* stderr, NUL-terminated, owned */
};

#define T_ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/*
 * Run $WALCTL_BIN with @args (NULL-terminated, borrowed), @in (borrowed,
 * @in_len bytes; NULL for /dev/null) on stdin, in an environment without
 * WAL_* and WALCTL_CONFIG plus @env ("NAME=VALUE", NULL-terminated, may be
 * NULL).  Waits for it.
 */
struct t_out t_walctl(const char *const *env, const void *in, size_t in_len,
                      const char *const *args);
void t_out_free(struct t_out *r);

/* Background run: stdout on a pipe (*ret_out, read end, owned by the
 * caller), stderr to a memfd (*ret_err, owned), stdin a pipe whose write end
 * is *ret_in (owned) or, with @ret_in NULL, /dev/null.  @returns the pid. */
pid_t t_walctl_spawn(const char *const *args, int *ret_in, int *ret_out, int *ret_err);

/* "-b BACKEND -X SETTING" followed by @args (borrowed), NULL-terminated, as
 * a new array (owned by the caller, free()); the strings are not copied. */
const char **t_backend_args(const char *backend, const char *setting,
                            const char *const *args);
/* Wait for @pid; @returns its exit status or 128 + signal. */
int t_wait(pid_t pid);
/* Wait at most @timeout_ms for @pid; @returns as t_wait(), or -1 when it
 * was still running (it is then killed with SIGKILL and reaped). */
int t_wait_ms(pid_t pid, int timeout_ms);
/* Read one line (without its newline) from @fd into @buf within @timeout_ms;
 * @returns its length, or -1 on timeout or end of file. */
ssize_t t_read_line(int fd, char *buf, size_t len, int timeout_ms);
/* The whole content of a memfd or file descriptor @fd (owned result). */
char *t_slurp(int fd);

/* A new empty directory under /tmp (owned path) / remove it recursively. */
char *t_tmpdir(void);
void t_rmtree(char *path);   /* frees @path */

/* The line of @text starting with @prefix, as a static copy, or NULL. */
const char *t_line(const char *text, const char *prefix);
/* Number of '\n'-terminated lines in @text. */
size_t t_count_lines(const char *text);

/* ---- A private redis-server ---- */

/* Start redis-server on a free 127.0.0.1 port in a fresh directory, no
 * persistence; waits for PONG.  @returns the pid (stop it with t_redis_stop),
 * or -1 when redis-server is not installed or never answered. */
pid_t t_redis_start(int *ret_port, char **ret_dir);
/* SIGTERM, reap, remove the directory (freed). */
void t_redis_stop(pid_t pid, char *dir);
/* A loopback port nothing listens on right now. */
int t_free_port(void);

/* ---- JSON ---- */

enum t_json_kind { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

struct t_json {
        enum t_json_kind kind;
        bool b;
        double num;
        char *num_text;              /* TJ_NUM: the literal, for exact integers */
        char *str;                   /* TJ_STR: decoded (may hold NULs) */
        size_t str_len;
        size_t n;                    /* TJ_ARR, TJ_OBJ */
        char **keys;                 /* TJ_OBJ */
        struct t_json **items;
};

/* Parse exactly one JSON value from @text (@len bytes); NULL if invalid
 * (strict RFC 8259: no trailing garbage, strings must be valid). */
struct t_json *t_json_parse(const char *text, size_t len);
void t_json_free(struct t_json *j);
/* Member @key of object @j, or NULL. */
const struct t_json *t_json_get(const struct t_json *j, const char *key);
/* String member (NUL-terminated decoded text) or NULL. */
const char *t_json_str(const struct t_json *j, const char *key);
/* Unsigned integer member; false if absent or not an integer. */
bool t_json_u64(const struct t_json *j, const char *key, uint64_t *ret);

/* Decode base64 (padded); @returns the length, or -1. */
ssize_t t_base64_decode(const char *in, unsigned char *out, size_t cap);

#endif /* T_WALCTL_H */
