/* SPDX-License-Identifier: MIT */
/*
 * tools/walctl/output.c: JSON text, base64 and UTF-8 checks for walctl's
 * output, plus the checks of writes to standard output.
 *
 * JSON must stay valid whatever bytes a record holds (kcat issue #111 is the
 * failure this avoids).  A JSON string can only carry Unicode text, so a byte
 * string that is valid UTF-8 is written as a string with the characters JSON
 * requires escaped (quote, backslash, every control character below 0x20);
 * one that is not is written base64-encoded under a "<field>_b64" name by the
 * caller, never altered or replaced.  The UTF-8 check is strict (RFC 3629):
 * no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF.
 *
 * Data for standard output goes through one buffer of our own rather than
 * stdio, so that the errno of a failed write(2) is known exactly: the first
 * failure is kept and every later write is dropped.  walctl_out_finish()
 * turns it into an exit decision: EPIPE (the reader went away, `| head`) is
 * a quiet success, anything else an I/O error.  Only one thread writes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walctl.h"

/* ---- The stdout buffer ---- */

static struct {
        char buf[1 << 16];
        size_t n;
        int err;                      /* first write error (negative errno), sticky */
} out;

int walctl_out_flush(void)
{
        size_t done = 0;
        while (done < out.n && !out.err) {
                ssize_t w = write(STDOUT_FILENO, out.buf + done, out.n - done);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        out.err = -errno;
                        break;
                }
                done += (size_t)w;
        }
        out.n = 0;
        return out.err;
}

int walctl_out_error(void)
{
        return out.err;
}

void walctl_out_write(const void *p, size_t len)
{
        if (out.err)
                return;
        if (out.n + len > sizeof(out.buf)) {
                walctl_out_flush();
                if (len >= sizeof(out.buf)) {
                        /* Large: write it straight from the caller's memory. */
                        const char *c = p;
                        while (len > 0 && !out.err) {
                                ssize_t w = write(STDOUT_FILENO, c, len);
                                if (w < 0) {
                                        if (errno != EINTR)
                                                out.err = -errno;
                                        continue;
                                }
                                c += w;
                                len -= (size_t)w;
                        }
                        return;
                }
        }
        memcpy(out.buf + out.n, p, len);
        out.n += len;
}

void walctl_out_putc(char c)
{
        if (out.n == sizeof(out.buf))
                walctl_out_flush();
        if (!out.err)
                out.buf[out.n++] = c;
}

void walctl_out_puts(const char *s)
{
        walctl_out_write(s, strlen(s));
}

void walctl_out_printf(const char *fmt, ...)
{
        char small[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n < sizeof(small)) {
                walctl_out_write(small, (size_t)n);
                return;
        }
        char *big = NULL;
        va_start(ap, fmt);
        n = vasprintf(&big, fmt, ap);
        va_end(ap);
        if (n >= 0)
                walctl_out_write(big, (size_t)n);
        free(big);
}

int walctl_out_finish(const char *what)
{
        int r = walctl_out_flush();
        if (r == 0 || r == -EPIPE)
                return WALCTL_EXIT_OK;
        walctl_error(what, "writing standard output: %s", strerror(-r));
        return WALCTL_EXIT_IOERR;
}

/* ---- Text checks and encodings ---- */

bool walctl_utf8_valid(const void *buf, size_t len)
{
        const unsigned char *p = buf, *end = p + len;
        while (p < end) {
                unsigned char c = *p;
                if (c < 0x80) {
                        p++;
                        continue;
                }
                size_t n;
                uint32_t cp, min;
                if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                        cp = c & 0x1f;
                        min = 0x80;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        cp = c & 0x0f;
                        min = 0x800;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        cp = c & 0x07;
                        min = 0x10000;
                } else {
                        return false;  /* continuation byte, 0xc0/0xc1 or >= 0xf5 */
                }
                if ((size_t)(end - p) <= n)
                        return false;
                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                p += n + 1;
        }
        return true;
}

void walctl_json_string(const void *buf, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = buf;
        size_t run = 0;  /* bytes of p[i - run .. i) that need no escape */
        walctl_out_putc('"');
        for (size_t i = 0; i < len; i++) {
                unsigned char c = p[i];
                if (c >= 0x20 && c != '"' && c != '\\') {
                        run++;
                        continue;
                }
                if (run)
                        walctl_out_write(p + i - run, run);
                run = 0;
                walctl_out_putc('\\');
                switch (c) {
                case '"': walctl_out_putc('"'); break;
                case '\\': walctl_out_putc('\\'); break;
                case '\b': walctl_out_putc('b'); break;
                case '\f': walctl_out_putc('f'); break;
                case '\n': walctl_out_putc('n'); break;
                case '\r': walctl_out_putc('r'); break;
                case '\t': walctl_out_putc('t'); break;
                default:
                        walctl_out_puts("u00");
                        walctl_out_putc(hex[c >> 4]);
                        walctl_out_putc(hex[c & 15]);
                        break;
                }
        }
        if (run)
                walctl_out_write(p + len - run, run);
        walctl_out_putc('"');
}

void walctl_json_cstr(const char *s)
{
        walctl_json_string(s ? s : "", s ? strlen(s) : 0);
}

void walctl_base64(const void *buf, size_t len)
{
        static const char tab[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *p = buf;
        char q[4];
        walctl_out_putc('"');
        size_t i = 0;
        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
                q[0] = tab[v >> 18];
                q[1] = tab[(v >> 12) & 63];
                q[2] = tab[(v >> 6) & 63];
                q[3] = tab[v & 63];
                walctl_out_write(q, 4);
        }
        if (i < len) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)p[i + 1] << 8;
                q[0] = tab[v >> 18];
                q[1] = tab[(v >> 12) & 63];
                q[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
                q[3] = '=';
                walctl_out_write(q, 4);
        }
        walctl_out_putc('"');
}
