/* SPDX-License-Identifier: MIT */
/*
 * wal/wal-local.h: offline checks of the local backend's files.
 *
 * The local backend keeps a channel as segment files in <local.dir>/<channel>
 * (format: impls/local/local-format.c).  Opening a channel read-write cuts a
 * torn last frame by itself; any other damage makes the open fail with the
 * segment and offset named.  These two functions act on the files directly,
 * without opening the channel through a backend:
 *
 *   wal_local_verify()  reads every frame and reports the first fault;
 *   wal_local_repair()  cuts the log at that fault, keeping everything before
 *                       it, after copying what it cuts to side files, and
 *                       rewrites a damaged term file.
 *
 * Both exist only when libwal is built with the local backend (HAVE_LOCAL).
 * Thread-safe; they block on disk I/O.
 */
#ifndef WAL_LOCAL_H
#define WAL_LOCAL_H

#include <stdint.h>

#include <wal/wal-common.h>
#include <wal/wal-error.h>

WAL_BEGIN_DECLS

enum wal_local_fault_kind {
        WAL_LOCAL_FAULT_NONE = 0,       /* every frame checks out */
        WAL_LOCAL_FAULT_TORN_TAIL,      /* the last segment ends in a partly written frame */
        WAL_LOCAL_FAULT_BAD_FRAME,      /* a frame fails its CRC or header check */
        WAL_LOCAL_FAULT_BAD_HEADER,     /* a segment header does not validate */
        WAL_LOCAL_FAULT_LSN_GAP,        /* a segment is missing or LSNs are out of sequence */
        WAL_LOCAL_FAULT_BAD_TERM,       /* every frame checks out, but the term file (the
                                           owner's term) is damaged: segment is "term" */
};

struct wal_local_fault {
        enum wal_local_fault_kind kind;
        const char *kind_name;          /* "none", "torn-tail", "bad-frame", "bad-header",
                                           "lsn-gap", "bad-term" (static) */
        char segment[64];               /* segment file name in the channel directory,
                                           "" when kind is NONE */
        uint64_t offset;                /* byte offset of the fault in that file */
        uint64_t lsn;                   /* the LSN expected there */
        uint64_t first_lsn, last_lsn;   /* the valid records before the fault
                                           (last_lsn < first_lsn: none) */
        uint64_t segments;              /* segment files seen */
        char cut_file[96];              /* repair only: the side file (in the channel
                                           directory) holding what was cut from the
                                           faulty segment, "" if nothing was cut */
};

/**
 * @brief Check every frame of a channel of the local backend.
 * @param dir      the data directory, the local.dir property (borrowed).
 * @param channel  the channel name (borrowed).
 * @param ret      filled with the first fault (kind NONE when clean); set
 *                 only when 0 is returned.
 * @returns 0 when the check ran (clean or not); -EINVAL bad argument or
 *          channel name; -ENOENT no such channel; -EIO and other negative
 *          errno values when a file could not be read.
 */
WAL_EXPORT int wal_local_verify(const char *dir, const char *channel,
                                struct wal_local_fault *ret, wal_error **reterr);

/**
 * @brief Cut a channel of the local backend at its first fault.
 *
 * The bytes cut from the faulty segment are first copied to
 * "<segment>.cut-<offset>" (fsynced), or the whole segment is renamed
 * "<segment>.cut" when none of it is valid; every later segment is renamed
 * "<name>.cut"; then the directory is fsynced.  The records before the fault
 * stay and read as before.  A damaged term file (fault BAD_TERM, or found
 * after the cut) is kept as "term.cut" and replaced by the term of the last
 * record (a local log's terms never decrease, so that is the highest term
 * that wrote), or removed when no record is left.  Nothing is changed on a
 * clean channel.
 * @param ret  the fault that was repaired (kind NONE: nothing to do), with
 *             cut_file set; set only when 0 is returned.
 * @returns 0; -EBUSY a writer has the channel open (in any process);
 *          -EINVAL; -ENOENT; -EIO and other I/O errors.
 */
WAL_EXPORT int wal_local_repair(const char *dir, const char *channel,
                                struct wal_local_fault *ret, wal_error **reterr);

WAL_END_DECLS

#endif /* WAL_LOCAL_H */
