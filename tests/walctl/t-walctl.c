/* SPDX-License-Identifier: MIT */
/*
 * tests/walctl/t-walctl.c: helpers of the walctl data-command tests (see
 * t-walctl.h).  Child processes get an environment without WAL_* variables
 * and WALCTL_CONFIG so that the caller's shell cannot change an outcome.
 * The JSON parser is deliberately strict: a walctl line that a strict parser
 * refuses is a bug the tests must catch.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t-walctl.h"

extern char **environ;

static char **child_env(const char *const *env)
{
        size_t n_env = 0, n_extra = 0;
        while (environ[n_env])
                n_env++;
        while (env && env[n_extra])
                n_extra++;
        char **envp = calloc(n_env + n_extra + 1, sizeof(*envp));
        cr_assert_not_null(envp);
        size_t k = 0;
        for (size_t i = 0; i < n_env; i++)
                if (strncmp(environ[i], "WAL_", 4) != 0 &&
                    strncmp(environ[i], "WALCTL_CONFIG=", 14) != 0)
                        envp[k++] = environ[i];
        for (size_t i = 0; i < n_extra; i++)
                envp[k++] = (char *)env[i];
        return envp;
}

static char **child_argv(const char *const *args)
{
        const char *bin = getenv("WALCTL_BIN");
        cr_assert_not_null(bin, "WALCTL_BIN is not set: run this test through meson");
        size_t n = 0;
        while (args[n])
                n++;
        char **argv = calloc(n + 2, sizeof(*argv));
        cr_assert_not_null(argv);
        argv[0] = (char *)bin;
        for (size_t i = 0; i < n; i++)
                argv[i + 1] = (char *)args[i];
        return argv;
}

char *t_slurp(int fd)
{
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap);
        cr_assert_not_null(buf);
        off_t off = 0;
        for (;;) {
                if (len + 1 >= cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        cr_assert_not_null(buf);
                }
                ssize_t n = pread(fd, buf + len, cap - len - 1, off);
                if (n < 0 && errno == ESPIPE)
                        n = read(fd, buf + len, cap - len - 1);
                else if (n > 0)
                        off += n;
                if (n < 0 && errno == EINTR)
                        continue;
                cr_assert(n >= 0, "read: %s", strerror(errno));
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        return buf;
}

int t_wait(pid_t pid)
{
        int status;
        while (waitpid(pid, &status, 0) < 0)
                cr_assert_eq(errno, EINTR);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int t_wait_ms(pid_t pid, int timeout_ms)
{
        for (int waited = 0;; waited += 10) {
                int status;
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r < 0)
                        cr_assert_eq(errno, EINTR);
                if (r == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                if (waited >= timeout_ms)
                        break;
                usleep(10 * 1000);
        }
        kill(pid, SIGKILL);
        t_wait(pid);
        return -1;
}

struct t_out t_walctl(const char *const *env, const void *in, size_t in_len,
                      const char *const *args)
{
        char **envp = child_env(env);
        char **argv = child_argv(args);
        int ifd = -1;
        if (in) {
                ifd = memfd_create("walctl-stdin", MFD_CLOEXEC);
                cr_assert(ifd >= 0);
                size_t done = 0;
                while (done < in_len) {
                        ssize_t n = write(ifd, (const char *)in + done, in_len - done);
                        cr_assert(n > 0);
                        done += (size_t)n;
                }
                cr_assert_eq(lseek(ifd, 0, SEEK_SET), 0);
        }
        int ofd = memfd_create("walctl-stdout", MFD_CLOEXEC);
        int efd = memfd_create("walctl-stderr", MFD_CLOEXEC);
        cr_assert(ofd >= 0 && efd >= 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                int sin = ifd >= 0 ? ifd : open("/dev/null", O_RDONLY);
                if (sin < 0 || dup2(sin, 0) < 0 || dup2(ofd, 1) < 0 || dup2(efd, 2) < 0)
                        _exit(126);
                execve(argv[0], argv, envp);
                _exit(127);
        }
        struct t_out r = { .code = t_wait(pid) };
        cr_assert_neq(r.code, 127, "could not exec %s", argv[0]);
        struct stat st;
        cr_assert_eq(fstat(ofd, &st), 0);
        r.out = t_slurp(ofd);
        r.out_len = (size_t)st.st_size;
        r.err = t_slurp(efd);
        close(ofd);
        close(efd);
        if (ifd >= 0)
                close(ifd);
        free(envp);
        free(argv);
        return r;
}

void t_out_free(struct t_out *r)
{
        free(r->out);
        free(r->err);
        r->out = r->err = NULL;
}

pid_t t_walctl_spawn(const char *const *args, int *ret_in, int *ret_out, int *ret_err)
{
        char **envp = child_env(NULL);
        char **argv = child_argv(args);
        int p[2], q[2] = { -1, -1 };
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        if (ret_in)
                cr_assert_eq(pipe2(q, O_CLOEXEC), 0);
        int efd = memfd_create("walctl-stderr", MFD_CLOEXEC);
        cr_assert(efd >= 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                int sin = q[0] >= 0 ? q[0] : open("/dev/null", O_RDONLY);
                if (sin < 0 || dup2(sin, 0) < 0 || dup2(p[1], 1) < 0 || dup2(efd, 2) < 0)
                        _exit(126);
                execve(argv[0], argv, envp);
                _exit(127);
        }
        close(p[1]);
        if (ret_in) {
                close(q[0]);
                *ret_in = q[1];
        }
        *ret_out = p[0];
        *ret_err = efd;
        free(envp);
        free(argv);
        return pid;
}

ssize_t t_read_line(int fd, char *buf, size_t len, int timeout_ms)
{
        size_t n = 0;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (n + 1 < len) {
                struct timespec t1;
                clock_gettime(CLOCK_MONOTONIC, &t1);
                long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
                if (spent >= timeout_ms)
                        return -1;
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int pr = poll(&pfd, 1, (int)(timeout_ms - spent));
                if (pr <= 0)
                        continue;
                /* One byte at a time: the rest of the pipe is the next line's. */
                ssize_t r = read(fd, buf + n, 1);
                if (r <= 0)
                        return -1;
                if (buf[n] == '\n') {
                        buf[n] = '\0';
                        return (ssize_t)n;
                }
                n++;
        }
        return -1;
}

/* ---- Directories ---- */

char *t_tmpdir(void)
{
        char *path = strdup("/tmp/walctl-test-XXXXXX");
        cr_assert_not_null(path);
        cr_assert_not_null(mkdtemp(path), "mkdtemp: %s", strerror(errno));
        return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (flag == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

void t_rmtree(char *path)
{
        if (path)
                nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(path);
}

const char *t_line(const char *text, const char *prefix)
{
        static char line[8192];
        size_t plen = strlen(prefix);
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                if (len >= plen && strncmp(p, prefix, plen) == 0 && len < sizeof(line)) {
                        memcpy(line, p, len);
                        line[len] = '\0';
                        return line;
                }
                p = nl ? nl + 1 : NULL;
        }
        return NULL;
}

size_t t_count_lines(const char *text)
{
        size_t n = 0;
        for (const char *p = text; (p = strchr(p, '\n')); p++)
                n++;
        return n;
}

/* ---- redis-server ---- */

int t_free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert(fd >= 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

static bool redis_pong(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        bool ok = false;
        char buf[16] = { 0 };
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            write(fd, "PING\r\n", 6) == 6) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                if (poll(&pfd, 1, 1000) > 0 && read(fd, buf, sizeof(buf) - 1) > 0)
                        ok = strncmp(buf, "+PONG", 5) == 0;
        }
        close(fd);
        return ok;
}

pid_t t_redis_start(int *ret_port, char **ret_dir)
{
        char *rdir = t_tmpdir();
        int port = t_free_port();
        char port_text[16];
        snprintf(port_text, sizeof(port_text), "%d", port);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                if (null >= 0) {
                        dup2(null, 0);
                        dup2(null, 1);
                        dup2(null, 2);
                }
                execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port",
                       port_text, "--dir", rdir, "--save", "", "--appendonly", "no",
                       (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                if (redis_pong(port)) {
                        *ret_port = port;
                        *ret_dir = rdir;
                        return pid;
                }
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid)
                        break;
                usleep(10 * 1000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        t_rmtree(rdir);
        return -1;
}

void t_redis_stop(pid_t pid, char *rdir)
{
        if (pid > 0) {
                kill(pid, SIGTERM);
                t_wait(pid);
        }
        t_rmtree(rdir);
}

/* ---- JSON ---- */

struct parser {
        const char *p, *end;
};

static void skip_ws(struct parser *ps)
{
        while (ps->p < ps->end &&
               (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
                ps->p++;
}

static struct t_json *new_node(enum t_json_kind kind)
{
        struct t_json *j = calloc(1, sizeof(*j));
        cr_assert_not_null(j);
        j->kind = kind;
        return j;
}

static int hex4(const char *p, unsigned *ret)
{
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (unsigned)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (unsigned)(c - 'A' + 10);
                else
                        return -1;
        }
        *ret = v;
        return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* Strict UTF-8 check of raw string bytes (the same rules as RFC 3629). */
static bool utf8_ok(const unsigned char *p, size_t len)
{
        size_t i = 0;
        while (i < len) {
                unsigned c = p[i];
                size_t n;
                unsigned cp, min;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        n = 1, cp = c & 0x1f, min = 0x80;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2, cp = c & 0x0f, min = 0x800;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3, cp = c & 0x07, min = 0x10000;
                } else {
                        return false;
                }
                if (i + n >= len)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

static char *parse_string(struct parser *ps, size_t *ret_len)
{
        if (ps->p >= ps->end || *ps->p != '"')
                return NULL;
        ps->p++;
        const char *start = ps->p;
        char *out = malloc((size_t)(ps->end - ps->p) + 1);
        cr_assert_not_null(out);
        size_t n = 0;
        while (ps->p < ps->end && *ps->p != '"') {
                unsigned char c = (unsigned char)*ps->p;
                if (c < 0x20)
                        goto bad;  /* raw control characters are not allowed */
                if (c != '\\') {
                        out[n++] = (char)c;
                        ps->p++;
                        continue;
                }
                ps->p++;
                if (ps->p >= ps->end)
                        goto bad;
                char e = *ps->p++;
                switch (e) {
                case '"': out[n++] = '"'; break;
                case '\\': out[n++] = '\\'; break;
                case '/': out[n++] = '/'; break;
                case 'b': out[n++] = '\b'; break;
                case 'f': out[n++] = '\f'; break;
                case 'n': out[n++] = '\n'; break;
                case 'r': out[n++] = '\r'; break;
                case 't': out[n++] = '\t'; break;
                case 'u': {
                        unsigned cp;
                        if (ps->end - ps->p < 4 || hex4(ps->p, &cp) < 0)
                                goto bad;
                        ps->p += 4;
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                unsigned lo;
                                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                                    hex4(ps->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                                        goto bad;
                                ps->p += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                                goto bad;
                        }
                        n += put_utf8(out + n, cp);
                        break;
                }
                default:
                        goto bad;
                }
        }
        if (ps->p >= ps->end)
                goto bad;
        if (!utf8_ok((const unsigned char *)start, (size_t)(ps->p - start)))
                goto bad;
        ps->p++;
        out[n] = '\0';
        *ret_len = n;
        return out;
bad:
        free(out);
        return NULL;
}

static struct t_json *parse_value(struct parser *ps, int depth);

static struct t_json *parse_number(struct parser *ps)
{
        const char *s = ps->p;
        if (ps->p < ps->end && *ps->p == '-')
                ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                return NULL;
        if (*ps->p == '0')
                ps->p++;
        else
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        if (ps->p < ps->end && *ps->p == '.') {
                ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return NULL;
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
                ps->p++;
                if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
                        ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return NULL;
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        struct t_json *j = new_node(TJ_NUM);
        j->num_text = strndup(s, (size_t)(ps->p - s));
        j->num = strtod(j->num_text, NULL);
        return j;
}

static struct t_json *parse_value(struct parser *ps, int depth)
{
        if (depth > 64)
                return NULL;
        skip_ws(ps);
        if (ps->p >= ps->end)
                return NULL;
        char c = *ps->p;
        if (c == '{' || c == '[') {
                bool obj = c == '{';
                struct t_json *j = new_node(obj ? TJ_OBJ : TJ_ARR);
                ps->p++;
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
                        ps->p++;
                        return j;
                }
                for (;;) {
                        char *key = NULL;
                        if (obj) {
                                size_t klen;
                                skip_ws(ps);
                                key = parse_string(ps, &klen);
                                skip_ws(ps);
                                if (!key || ps->p >= ps->end || *ps->p != ':') {
                                        free(key);
                                        t_json_free(j);
                                        return NULL;
                                }
                                ps->p++;
                        }
                        struct t_json *v = parse_value(ps, depth + 1);
                        if (!v) {
                                free(key);
                                t_json_free(j);
                                return NULL;
                        }
                        j->items = realloc(j->items, (j->n + 1) * sizeof(*j->items));
                        j->keys = realloc(j->keys, (j->n + 1) * sizeof(*j->keys));
                        cr_assert(j->items && j->keys);
                        j->items[j->n] = v;
                        j->keys[j->n] = key;
                        j->n++;
                        skip_ws(ps);
                        if (ps->p < ps->end && *ps->p == ',') {
                                ps->p++;
                                continue;
                        }
                        if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
                                ps->p++;
                                return j;
                        }
                        t_json_free(j);
                        return NULL;
                }
        }
        if (c == '"') {
                struct t_json *j = new_node(TJ_STR);
                j->str = parse_string(ps, &j->str_len);
                if (!j->str) {
                        free(j);
                        return NULL;
                }
                return j;
        }
        static const struct {
                const char *lit;
                enum t_json_kind kind;
                bool b;
        } lits[] = { { "true", TJ_BOOL, true }, { "false", TJ_BOOL, false },
                     { "null", TJ_NULL, false } };
        for (size_t i = 0; i < 3; i++) {
                size_t n = strlen(lits[i].lit);
                if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lits[i].lit, n) == 0) {
                        ps->p += n;
                        struct t_json *j = new_node(lits[i].kind);
                        j->b = lits[i].b;
                        return j;
                }
        }
        return parse_number(ps);
}

struct t_json *t_json_parse(const char *text, size_t len)
{
        struct parser ps = { text, text + len };
        struct t_json *j = parse_value(&ps, 0);
        if (!j)
                return NULL;
        skip_ws(&ps);
        if (ps.p != ps.end) {
                t_json_free(j);
                return NULL;
        }
        return j;
}

void t_json_free(struct t_json *j)
{
        if (!j)
                return;
        for (size_t i = 0; i < j->n; i++) {
                t_json_free(j->items[i]);
                if (j->keys)
                        free(j->keys[i]);
        }
        free(j->items);
        free(j->keys);
        free(j->str);
        free(j->num_text);
        free(j);
}

const struct t_json *t_json_get(const struct t_json *j, const char *key)
{
        if (!j || j->kind != TJ_OBJ)
                return NULL;
        for (size_t i = 0; i < j->n; i++)
                if (strcmp(j->keys[i], key) == 0)
                        return j->items[i];
        return NULL;
}

const char *t_json_str(const struct t_json *j, const char *key)
{
        const struct t_json *v = t_json_get(j, key);
        return v && v->kind == TJ_STR ? v->str : NULL;
}

bool t_json_u64(const struct t_json *j, const char *key, uint64_t *ret)
{
        const struct t_json *v = t_json_get(j, key);
        if (!v || v->kind != TJ_NUM || strpbrk(v->num_text, ".eE-"))
                return false;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v->num_text, &end, 10);
        if (errno || *end)
                return false;
        *ret = x;
        return true;
}

ssize_t t_base64_decode(const char *in, unsigned char *out, size_t cap)
{
        static const char tab[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t len = strlen(in), n = 0;
        if (len % 4)
                return -1;
        for (size_t i = 0; i < len; i += 4) {
                unsigned v = 0;
                int pad = 0;
                for (int k = 0; k < 4; k++) {
                        char c = in[i + k];
                        const char *pos = c ? strchr(tab, c) : NULL;
                        if (c == '=' && i + 4 == len && k >= 2) {
                                pad++;
                                v <<= 6;
                                continue;
                        }
                        if (!pos || pad)
                                return -1;
                        v = (v << 6) | (unsigned)(pos - tab);
                }
                unsigned char b[3] = { (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                                       (unsigned char)v };
                for (int k = 0; k < 3 - pad; k++) {
                        if (n >= cap)
                                return -1;
                        out[n++] = b[k];
                }
        }
        return (ssize_t)n;
}

const char **t_backend_args(const char *backend, const char *setting,
                            const char *const *args)
{
        size_t n = 0;
        while (args[n])
                n++;
        const char **full = calloc(n + 5, sizeof(*full));
        cr_assert_not_null(full);
        full[0] = "-b";
        full[1] = backend;
        full[2] = "-X";
        full[3] = setting;
        for (size_t i = 0; i < n; i++)
                full[4 + i] = args[i];
        return full;
}
