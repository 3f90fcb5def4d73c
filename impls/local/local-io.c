/* SPDX-License-Identifier: MIT */
/*
 * impls/local/local-io.c: the injectable I/O layer of the local backend.
 *
 * Every system call the backend makes on its files (open, pread, pwrite,
 * fdatasync, fallocate, ...) goes through a struct local_io_ops, captured by
 * a channel when it is opened.  The default table below calls the kernel and
 * turns the -1/errno convention into negative errno values.  Tests install a
 * shim with local_io_set_ops() to inject ENOSPC, EIO on fsync or short
 * writes; io_uring completions pass through the shim's uring_result hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "local.h"

static int sys_open(void *ctx, const char *path, int flags, mode_t mode)
{
        (void)ctx;
        int fd;
        do
                fd = open(path, flags | O_CLOEXEC, mode);
        while (fd < 0 && errno == EINTR);
        return fd < 0 ? -errno : fd;
}

static int sys_close(void *ctx, int fd)
{
        (void)ctx;
        /* close() must not be retried on EINTR on Linux: the fd is gone. */
        return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t sys_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
        (void)ctx;
        ssize_t n;
        do
                n = pread(fd, buf, len, off);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

static ssize_t sys_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
        (void)ctx;
        ssize_t n;
        do
                n = pwrite(fd, buf, len, off);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

static int sys_fdatasync(void *ctx, int fd)
{
        (void)ctx;
        /* Never retried on error (fsyncgate): EINTR cannot happen here on
         * Linux, and any other error is reported as it is. */
        return fdatasync(fd) < 0 ? -errno : 0;
}

static int sys_fsync(void *ctx, int fd)
{
        (void)ctx;
        return fsync(fd) < 0 ? -errno : 0;
}

static int sys_fallocate(void *ctx, int fd, off_t off, off_t len)
{
        (void)ctx;
        int r;
        do
                r = fallocate(fd, 0, off, len);
        while (r < 0 && errno == EINTR);
        if (r < 0 && errno == EOPNOTSUPP) {
                /* File systems without fallocate (tmpfs before 3.5, some
                 * FUSE): posix_fallocate writes zeros instead. */
                int e = posix_fallocate(fd, off, len);
                return -e;
        }
        return r < 0 ? -errno : 0;
}

static int sys_ftruncate(void *ctx, int fd, off_t len)
{
        (void)ctx;
        int r;
        do
                r = ftruncate(fd, len);
        while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : 0;
}

static int sys_rename(void *ctx, const char *from, const char *to)
{
        (void)ctx;
        return rename(from, to) < 0 ? -errno : 0;
}

static int sys_unlink(void *ctx, const char *path)
{
        (void)ctx;
        return unlink(path) < 0 ? -errno : 0;
}

static const struct local_io_ops default_ops = {
        .open = sys_open,
        .close = sys_close,
        .pread = sys_pread,
        .pwrite = sys_pwrite,
        .fdatasync = sys_fdatasync,
        .fsync = sys_fsync,
        .fallocate = sys_fallocate,
        .ftruncate = sys_ftruncate,
        .rename = sys_rename,
        .unlink = sys_unlink,
        .uring_result = NULL,
        .uring_probe = NULL,
        .ctx = NULL,
};

static _Atomic(const struct local_io_ops *) current_ops = &default_ops;

const struct local_io_ops *local_io_default_ops(void)
{
        return &default_ops;
}

void local_io_set_ops(const struct local_io_ops *ops)
{
        atomic_store(&current_ops, ops ? ops : &default_ops);
}

const struct local_io_ops *local_io_current_ops(void)
{
        return atomic_load(&current_ops);
}

int local_io_fsync_dir(const struct local_io_ops *io, const char *dir)
{
        int fd = io->open(io->ctx, dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return fd;
        int r = io->fsync(io->ctx, fd);
        io->close(io->ctx, fd);
        return r;
}

int local_io_write_full(const struct local_io_ops *io, int fd, const void *buf, size_t len,
                        uint64_t off)
{
        size_t done = 0;
        while (done < len) {
                ssize_t n = io->pwrite(io->ctx, fd, (const uint8_t *)buf + done, len - done,
                                       (off_t)(off + done));
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return -EIO;
                done += (size_t)n;
        }
        return 0;
}
