/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-common.h: macros shared by every public header.
 *
 * Included by the other wal/ headers; users never need to include it
 * themselves.
 */
#ifndef WAL_COMMON_H
#define WAL_COMMON_H

#if defined(__GNUC__)
#  define WAL_EXPORT __attribute__((visibility("default")))
#  define WAL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#  define WAL_WARN_UNUSED __attribute__((warn_unused_result))
#else
#  define WAL_EXPORT
#  define WAL_PRINTF(fmt, args)
#  define WAL_WARN_UNUSED
#endif

#ifdef __cplusplus
#  define WAL_BEGIN_DECLS extern "C" {
#  define WAL_END_DECLS }
#else
#  define WAL_BEGIN_DECLS
#  define WAL_END_DECLS
#endif

#endif /* WAL_COMMON_H */
