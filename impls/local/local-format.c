/* SPDX-License-Identifier: MIT */
/*
 * impls/local/local-format.c: the on-disk format of the local backend, its
 * frame codec, recovery scan, verify and repair.
 *
 * Everything persistent is big-endian (walu_put_be*), never a struct copy.
 *
 * ---- Directory layout ----
 *
 *   <local.dir>/<channel>/               one directory per channel
 *       lock                             flock()ed (exclusive) by the writer
 *       term                             decimal term of the owner and a
 *                                        newline, replaced atomically (tmp +
 *                                        fsync + rename + directory fsync);
 *                                        absent until the first read-write
 *                                        open.  Anything else in it is damage
 *                                        (verify: bad-term; repair records the
 *                                        last record's term instead)
 *       00000000000000000001.seg         segments, named by their first LSN,
 *       00000000000000004711.seg         20 digits so names sort as numbers
 *
 * The directory is fsynced after every segment creation and removal.
 *
 * ---- Segment file ----
 *
 * A segment is created at its full size (local.segment_bytes, or larger for
 * one frame that does not fit) with fallocate, so later fdatasyncs never
 * change the file size.  With local.prepare=zero (the default) the writer
 * also writes zeros over the blocks ahead of its write head, in the
 * background (local.c, prep_main), so its fdatasyncs overwrite written
 * blocks instead of converting unwritten extents; on disk that space reads
 * as zeros either way.  It begins with a 4096-byte header page:
 *
 *   offset  size  field
 *   0       8     magic "LWALSEG1"
 *   8       4     format version (1)
 *   12      4     header size (4096): first frame offset
 *   16      8     first LSN (equals the number in the file name)
 *   24      8     file size when created
 *   32      8     creation time, ms since the epoch (informational)
 *   40      20    zero
 *   60      4     CRC32C of bytes 0..59
 *   64      4032  the previous segment's summary (below), or zero
 *
 * The header is written and fdatasynced, and the directory fsynced, before
 * any frame is written to the segment.  A valid header with another version
 * is refused with -EPROTO.
 *
 * Previous-segment summary.  The writer creates a segment only when every
 * frame of the one before is durable, so it can describe that segment, now
 * sealed, in the new header page (bytes 64..):
 *
 *   offset  size  field
 *   64      8     magic "LWALPRV1"
 *   72      8     the previous segment's first LSN
 *   80      8     its last LSN (this segment's first LSN - 1)
 *   88      8     its end of data (the offset just past its last frame)
 *   96      4     n: index entries that follow, <= 248
 *   100     16*n  (LSN, offset) pairs of its sparse index, ascending (the
 *                 writer's index, evenly thinned when it has more entries)
 *   100+16n 4     CRC32C of bytes 64 .. 99+16n
 *
 * Bytes 64..71 all zero: no summary (the first segment of a channel, one
 * written before summaries existed, or after an empty segment).  Readers of
 * version 1 without this paragraph ignore bytes 64.. and read such files
 * unchanged; this reader reads their files by walking them.  A magic that is
 * present with a bad CRC or impossible fields makes the header invalid (the
 * header page was damaged, or torn while being created).
 *
 * ---- Frame ----
 *
 * Frames follow each other from offset 4096, each starting at a multiple
 * of 8 (so a frame header never straddles a 512-byte sector):
 *
 *   offset  size  field
 *   0       4     B: body length (envelope + payload), <= 256 MiB
 *   4       4     E: envelope length, <= B
 *   8       8     LSN: 1 for the first record of the channel, +1 per record
 *   16      4     flags, 0 (reserved)
 *   20      4     masked CRC32C of (body || bytes 0..19 of this header)
 *   24      E     envelope (utility/envelope.h)
 *   24+E    B-E   payload
 *   24+B    pad   zeros up to the next multiple of 8
 *
 * The CRC is computed over the body first so appenders can checksum their
 * record before they know its LSN; it is masked as LevelDB does
 * (rotate right 15, add 0xa282ead8) because a payload may itself contain
 * frames.  The LSN inside the CRC means a frame is valid only at its own
 * position in the sequence: stale bytes never validate elsewhere.
 *
 * End of data: an all-zero 24-byte header (preallocated space reads as
 * zeros, whether still unwritten or zero-written ahead of the head by the
 * writer; LSN 0 is never written), or fewer than 24 bytes left in the file.
 *
 * ---- Validity rule ----
 *
 * A frame at offset X is valid when: E <= B <= 256 MiB, X + 24 + B is inside
 * the file, its LSN is the previous frame's LSN + 1 (the first frame of a
 * segment: the header's first LSN) and its CRC matches.  The first segment
 * may start at any LSN (earlier ones were truncated away); every later one
 * starts at the previous one's last LSN + 1.
 *
 * ---- Recovery (on open) ----
 *
 *  1. List *.seg files, sort by first LSN.
 *  2. For each segment check its header: the name and header must agree.
 *     The last segment with a bad header and an all-zero first frame header
 *     was torn while being created (no frame was ever written to it: frames
 *     are written only after the header is durable): it is removed, provided
 *     it could be one: its name is the LSN after the previous segment's last
 *     (or it is the only segment) and its first 8 bytes are zero or the
 *     magic (a torn header write leaves the header's own bytes or none).
 *     Any other bad header refuses the open (-EBADMSG, file, offset 0).
 *  3. Check continuity: a gap or overlap in LSNs between segments refuses
 *     the open (-EBADMSG naming the segment that does not follow; for a gap
 *     after a segment whose file is shorter than it was created, naming
 *     that segment and the offset where its data stops: it was cut).
 *  4. Scan each segment's frames with 1 MiB reads, building a sparse index
 *     (one (LSN, offset) pair per 256 KiB) until the end of data.  The last
 *     segment's frames are checked in full (the validity rule above).  The
 *     other, sealed segments are not CRC-checked at open (the default,
 *     local.open_check=tail: reading and CRC-checking every byte would cost
 *     the open as much as a full replay).  A sealed segment that the next
 *     segment's header summarises (above, first and last LSN matching, end
 *     inside the file) takes its end and index from the summary; the open
 *     walks the frame headers from its last index entry to that end and uses
 *     the summary only if the walk ends exactly there at its last LSN.  Any
 *     other sealed segment is walked by its frame headers from the start:
 *     lengths, flags and the LSN sequence are checked.  Their CRCs are checked by every
 *     scanner as it reads them: a frame whose CRC fails is never delivered,
 *     the scanner fails with -EBADMSG naming the segment file and offset.
 *     With local.open_check=all, and always for `walctl verify`/`repair`,
 *     every frame's CRC is checked here.  When the header walk of a sealed
 *     segment breaks off, the segment is scanned again with CRCs so the
 *     fault names the first frame that really fails.  A frame that does not
 *     validate:
 *       - in a segment other than the last: corruption, refuse (-EBADMSG
 *         with the segment file and the byte offset).  The writer finishes
 *         every write to a segment durably before writing the next one, so
 *         an older segment cannot legitimately end torn.
 *       - in the last segment of a file shorter than it was created,
 *         with a partial frame at the end of the file (the frame runs past
 *         it, or a nonzero piece of a header is left): the file was cut,
 *         refuse.  A crash never shrinks a segment (it is preallocated);
 *         libwal's own cut (step 5, repair) ends the file exactly at the
 *         end of data.  Not when the data ends at the header: a segment
 *         whose step-5 cut was itself interrupted is written past its
 *         size by one frame (the writer's first frame in an empty segment)
 *         and may then be torn there.
 *       - in the last segment: torn (cut off there) when no valid frame
 *         with a later LSN follows it in the file, or when one does but the
 *         damaged region before it (the frame's own extent if its length
 *         is believable, else everything up to that later frame) holds an
 *         all-zero 512-byte sector piece (a part never written, as etcd
 *         decides: a batch torn while a later one landed).  Otherwise
 *         written data was damaged with valid frames after it: refuse.
 *     A torn frame is the very end of what a crash interrupted: nothing
 *     after it was acknowledged, because appends complete strictly in order
 *     and only after their fdatasync.
 *  5. Read-write opens then make the cut permanent: the last segment is
 *     truncated at the end of data and reallocated to its size (zeros), and
 *     fdatasynced, so bytes a crash left after the end can never be mistaken
 *     for data later.  Read-only opens only stop at the end.
 *
 * Recovery never returns a record that was not written whole: every record
 * delivered passed its CRC at its LSN (checked at open for the last segment,
 * by the scanner for the sealed ones).
 *
 * ---- What is rebuilt, not persisted ----
 *
 * The segment list, the end offsets and the sparse index live in memory and
 * are rebuilt by the scan above (for summarised segments, from the
 * summaries: an accelerator that the data itself is checked against).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wal/wal-log.h>
#include "utility/crc32c.h"
#include "utility/envelope.h"
#include "utility/walu.h"
#include "local.h"

/* ---- Frame codec ---- */

static inline uint32_t crc_mask(uint32_t crc)
{
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

void local_frame_seal(uint8_t *hdr, uint64_t lsn, uint32_t env_len, uint32_t payload_len,
                      uint32_t body_crc)
{
        uint32_t body = env_len + payload_len;
        walu_put_be32(hdr + 0, body);
        walu_put_be32(hdr + 4, env_len);
        walu_put_be64(hdr + 8, lsn);
        walu_put_be32(hdr + 16, 0);
        uint32_t crc = walu_crc32c(body_crc, hdr, 20);
        walu_put_be32(hdr + 20, crc_mask(crc));
        size_t used = LOCAL_FRAME_HDR_SIZE + (size_t)body;
        size_t total = local_frame_size(body);
        memset(hdr + used, 0, total - used);
}

int local_frame_peek(const uint8_t *buf, size_t len, struct local_frame *ret)
{
        if (!buf || len < LOCAL_FRAME_HDR_SIZE)
                return -EAGAIN;
        uint32_t body = walu_get_be32(buf + 0);
        uint32_t env = walu_get_be32(buf + 4);
        uint64_t lsn = walu_get_be64(buf + 8);
        uint32_t flags = walu_get_be32(buf + 16);
        if (lsn == 0) {
                if (all_zero(buf, LOCAL_FRAME_HDR_SIZE))
                        return 0;
                return -EBADMSG;
        }
        if (body > LOCAL_FRAME_MAX_BODY || env > body || flags != 0)
                return -EBADMSG;
        if (len < LOCAL_FRAME_HDR_SIZE + (size_t)body)
                return -EAGAIN;
        uint64_t size = local_frame_size(body);
        *ret = (struct local_frame){
                .lsn = lsn,
                .env = buf + LOCAL_FRAME_HDR_SIZE,
                .env_len = env,
                .payload = buf + LOCAL_FRAME_HDR_SIZE + env,
                .payload_len = body - env,
                .size = size,
        };
        return (int)size;
}

static inline void crc_job(struct walu_crc32c_job *j, const struct local_frame *f)
{
        const uint8_t *hdr = f->env - LOCAL_FRAME_HDR_SIZE;
        *j = (struct walu_crc32c_job){
                .a = f->env, .a_len = (size_t)f->env_len + f->payload_len,
                .b = hdr, .b_len = 20,
        };
}

size_t local_frames_check_crc(const struct local_frame *f, size_t n)
{
        size_t ok = 0;
        while (ok < n) {
                struct walu_crc32c_job jobs[LOCAL_CRC_BATCH];
                size_t k = WALU_MIN(n - ok, (size_t)LOCAL_CRC_BATCH);
                for (size_t i = 0; i < k; i++)
                        crc_job(&jobs[i], &f[ok + i]);
                walu_crc32c_batch(jobs, k);
                for (size_t i = 0; i < k; i++) {
                        const uint8_t *hdr = f[ok].env - LOCAL_FRAME_HDR_SIZE;
                        if (crc_mask(jobs[i].crc) != walu_get_be32(hdr + 20))
                                return ok;
                        ok++;
                }
        }
        return ok;
}

/* Frames whose CRCs are computed together: a multiple of three, the jobs
 * walu_crc32c_batch runs side by side (a remainder runs one by one). */
#define LOCAL_SCAN_GROUP 48
/* How far ahead of the frame being parsed the walk asks for bytes. */
#ifndef LOCAL_SCAN_PREFETCH
#define LOCAL_SCAN_PREFETCH 1024
#endif
/*
 * The one walk behind local_frames_scan and local_frames_check (the same
 * checks in the same order, so both accept exactly the same frames): @out
 * NULL keeps no frames, @crc false checks headers and the LSN sequence only.
 * Inlined into each, so the constant arguments drop their branches.
 */
static inline __attribute__((always_inline)) size_t
frames_walk(const uint8_t *buf, size_t len, uint64_t lsn, size_t max, size_t checked, bool crc,
            struct local_frame *out, size_t *used)
{
        size_t n = 0, at = 0;
        /* The walk is a chain of dependent loads and the bytes may come from
         * another CPU's cache or from memory: ask for every line up to
         * LOCAL_SCAN_PREFETCH bytes ahead of the frame being parsed (one
         * address per frame would skip lines of frames over 64 bytes). */
        const uint8_t *pf = (const uint8_t *)((uintptr_t)buf & ~(uintptr_t)63);
        const uint8_t *pf_end = buf + len;
        while (n < max) {
                /* Headers of up to LOCAL_SCAN_GROUP frames, then their CRCs
                 * together; a header that does not pass ends the gathering. */
                struct walu_crc32c_job jobs[LOCAL_SCAN_GROUP];
                size_t first = n, nj = 0, skip = 0;
                bool stop = false;
                while (n - first < LOCAL_SCAN_GROUP) {
                        if (n == max || at + LOCAL_FRAME_HDR_SIZE > len) {
                                stop = true;
                                break;
                        }
                        const uint8_t *h = buf + at;
                        if (pf < h)     /* past a large frame: from this one on */
                                pf = (const uint8_t *)((uintptr_t)h & ~(uintptr_t)63);
                        while (pf < h + LOCAL_SCAN_PREFETCH && pf < pf_end) {
                                __builtin_prefetch(pf);
                                pf += 64;
                        }
                        uint32_t body = walu_get_be32(h + 0);
                        uint32_t env = walu_get_be32(h + 4);
                        if (walu_get_be64(h + 8) != lsn + n || walu_get_be32(h + 16) != 0 ||
                            body > LOCAL_FRAME_MAX_BODY || env > body ||
                            len - at - LOCAL_FRAME_HDR_SIZE < body) {
                                stop = true;
                                break;
                        }
                        size_t size = (size_t)local_frame_size(body);
                        const uint8_t *e = h + LOCAL_FRAME_HDR_SIZE;
                        if (out)
                                out[n] = (struct local_frame){
                                        .lsn = lsn + n, .env = e, .env_len = env,
                                        .payload = e + env, .payload_len = body - env,
                                        .size = size,
                                };
                        if (!crc || at + size <= checked)
                                skip++;         /* passed before: frames below @checked */
                        else
                                jobs[nj++] = (struct walu_crc32c_job){
                                        .a = e, .a_len = body, .b = h, .b_len = 20,
                                };
                        n++;
                        at += size;     /* may pass @len by the last frame's padding */
                }
                if (nj) {
                        walu_crc32c_batch(jobs, nj);
                        for (size_t i = 0; i < nj; i++) {
                                const uint8_t *h = jobs[i].b;
                                if (crc_mask(jobs[i].crc) != walu_get_be32(h + 20)) {
                                        /* Frames before the first bad one stand
                                         * (those below @checked come first). */
                                        n = first + skip + i;
                                        *used = (size_t)(h - buf);
                                        return n;
                                }
                        }
                }
                if (stop)
                        break;
        }
        *used = at;
        return n;
}

size_t local_frames_scan(const uint8_t *buf, size_t len, uint64_t lsn, size_t max,
                         size_t checked, struct local_frame *out, size_t *used)
{
        return frames_walk(buf, len, lsn, max, checked, true, out, used);
}

size_t local_frames_check(const uint8_t *buf, size_t len, uint64_t lsn, size_t max, bool crc,
                          size_t *used)
{
        if (crc)
                return frames_walk(buf, len, lsn, max, 0, true, NULL, used);
        return frames_walk(buf, len, lsn, max, 0, false, NULL, used);
}

int local_frame_decode(const uint8_t *buf, size_t len, struct local_frame *ret)
{
        struct local_frame f;
        int r = local_frame_peek(buf, len, &f);
        if (r <= 0)
                return r;
        uint32_t crc = walu_crc32c(0, f.env, (size_t)f.env_len + f.payload_len);
        crc = walu_crc32c(crc, buf, 20);
        if (crc_mask(crc) != walu_get_be32(buf + 20))
                return -EBADMSG;
        if (ret)
                *ret = f;
        return r;
}

/* ---- Segment header and names ---- */

void local_seg_header_encode(uint8_t *buf, uint64_t first_lsn, uint64_t seg_size)
{
        memset(buf, 0, LOCAL_SEG_HDR_SIZE);
        memcpy(buf, LOCAL_SEG_MAGIC, 8);
        walu_put_be32(buf + 8, LOCAL_SEG_VERSION);
        walu_put_be32(buf + 12, LOCAL_SEG_HDR_SIZE);
        walu_put_be64(buf + 16, first_lsn);
        walu_put_be64(buf + 24, seg_size);
        walu_put_be64(buf + 32, walu_realtime_ms());
        walu_put_be32(buf + 60, walu_crc32c(0, buf, 60));
}

int local_seg_header_check(const uint8_t *buf, size_t len, uint64_t *first_lsn)
{
        if (!buf || len < 64 || memcmp(buf, LOCAL_SEG_MAGIC, 8) != 0)
                return -EBADMSG;
        if (walu_crc32c(0, buf, 60) != walu_get_be32(buf + 60))
                return -EBADMSG;
        if (walu_get_be32(buf + 8) != LOCAL_SEG_VERSION)
                return -EPROTO;
        if (walu_get_be32(buf + 12) != LOCAL_SEG_HDR_SIZE)
                return -EBADMSG;
        uint64_t lsn = walu_get_be64(buf + 16);
        if (lsn == 0)
                return -EBADMSG;
        if (first_lsn)
                *first_lsn = lsn;
        return 0;
}

void local_seg_header_add_prev(uint8_t *buf, const struct local_seg *prev)
{
        if (!prev || prev->last_lsn < prev->first_lsn)
                return;
        /* Every index entry that fits, evenly thinned when there are more. */
        size_t n = WALU_MIN(prev->n_index, (size_t)LOCAL_PREV_INDEX_MAX);
        uint8_t *p = buf + LOCAL_PREV_OFF;
        memcpy(p, LOCAL_PREV_MAGIC, 8);
        walu_put_be64(p + 8, prev->first_lsn);
        walu_put_be64(p + 16, prev->last_lsn);
        walu_put_be64(p + 24, prev->end);
        walu_put_be32(p + 32, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                const struct local_index_entry *e = &prev->index[i * prev->n_index / n];
                walu_put_be64(p + 36 + 16 * i, e->lsn);
                walu_put_be64(p + 44 + 16 * i, e->off);
        }
        size_t len = 36 + 16 * n;
        walu_put_be32(p + len, walu_crc32c(0, p, len));
}

int local_seg_header_prev(const uint8_t *buf, size_t len, struct local_prev *ret)
{
        if (len < LOCAL_SEG_HDR_SIZE)
                return 0;
        const uint8_t *p = buf + LOCAL_PREV_OFF;
        if (memcmp(p, LOCAL_PREV_MAGIC, 8) != 0)
                return all_zero(p, 8) ? 0 : -EBADMSG;
        uint32_t n = walu_get_be32(p + 32);
        if (n > LOCAL_PREV_INDEX_MAX)
                return -EBADMSG;
        size_t body = 36 + 16 * (size_t)n;
        if (walu_crc32c(0, p, body) != walu_get_be32(p + body))
                return -EBADMSG;
        ret->first_lsn = walu_get_be64(p + 8);
        ret->last_lsn = walu_get_be64(p + 16);
        ret->end = walu_get_be64(p + 24);
        if (ret->first_lsn == 0 || ret->last_lsn < ret->first_lsn ||
            ret->end < LOCAL_SEG_HDR_SIZE + LOCAL_FRAME_HDR_SIZE)
                return -EBADMSG;
        ret->n_index = n;
        for (uint32_t i = 0; i < n; i++) {
                struct local_index_entry *e = &ret->index[i];
                e->lsn = walu_get_be64(p + 36 + 16 * i);
                e->off = walu_get_be64(p + 44 + 16 * i);
                /* Ascending, inside the data. */
                if (e->lsn < ret->first_lsn || e->lsn > ret->last_lsn ||
                    e->off < LOCAL_SEG_HDR_SIZE || e->off >= ret->end ||
                    (i && (e->lsn <= e[-1].lsn || e->off <= e[-1].off)))
                        return -EBADMSG;
        }
        return 1;
}

void local_seg_name(char *buf, uint64_t first_lsn)
{
        snprintf(buf, LOCAL_SEG_NAME_LEN + 1, "%020" PRIu64 LOCAL_SEG_SUFFIX, first_lsn);
}

bool local_seg_name_parse(const char *name, uint64_t *first_lsn)
{
        if (strlen(name) != LOCAL_SEG_NAME_LEN || strcmp(name + 20, LOCAL_SEG_SUFFIX) != 0)
                return false;
        uint64_t v = 0;
        for (int i = 0; i < 20; i++) {
                if (name[i] < '0' || name[i] > '9')
                        return false;
                unsigned d = (unsigned)(name[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        if (v == 0)
                return false;
        *first_lsn = v;
        return true;
}

const char *local_fault_kind_name(enum local_fault_kind k)
{
        switch (k) {
        case LOCAL_FAULT_NONE: return "none";
        case LOCAL_FAULT_TORN_TAIL: return "torn-tail";
        case LOCAL_FAULT_BAD_FRAME: return "bad-frame";
        case LOCAL_FAULT_BAD_HEADER: return "bad-header";
        case LOCAL_FAULT_LSN_GAP: return "lsn-gap";
        case LOCAL_FAULT_BAD_TERM: return "bad-term";
        }
        return "unknown";
}

/* ---- Segments in memory ---- */

struct local_seg *local_seg_new(const char *dir, uint64_t first_lsn)
{
        struct local_seg *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        char name[LOCAL_SEG_NAME_LEN + 1];
        local_seg_name(name, first_lsn);
        size_t n = strlen(dir) + 1 + sizeof(name);
        s->path = malloc(n);
        if (!s->path) {
                free(s);
                return NULL;
        }
        snprintf(s->path, n, "%s/%s", dir, name);
        s->first_lsn = first_lsn;
        s->last_lsn = first_lsn - 1;
        s->end = LOCAL_SEG_HDR_SIZE;
        return s;
}

void local_seg_free(struct local_seg *s)
{
        if (!s)
                return;
        free(s->path);
        free(s->index);
        free(s);
}

int local_seg_index_note(struct local_seg *s, uint64_t lsn, uint64_t off)
{
        if (s->n_index > 0 && off < s->index[s->n_index - 1].off + LOCAL_INDEX_STRIDE)
                return 0;
        if (s->n_index == s->cap_index) {
                size_t cap = s->cap_index ? s->cap_index * 2 : 16;
                struct local_index_entry *ni = realloc(s->index, cap * sizeof(*ni));
                if (!ni)
                        return -ENOMEM;
                s->index = ni;
                s->cap_index = cap;
        }
        s->index[s->n_index++] = (struct local_index_entry){ lsn, off };
        return 0;
}

void local_seg_index_find(const struct local_seg *s, uint64_t lsn, uint64_t *off,
                          uint64_t *at_lsn)
{
        size_t lo = 0, hi = s->n_index;
        /* Last entry with entry.lsn <= lsn. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (s->index[mid].lsn <= lsn)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == 0) {
                *off = LOCAL_SEG_HDR_SIZE;
                *at_lsn = s->first_lsn;
        } else {
                *off = s->index[lo - 1].off;
                *at_lsn = s->index[lo - 1].lsn;
        }
}

/* ---- Scanning ---- */

struct rbuf {
        uint8_t *p;
        size_t cap;
};

static int rbuf_reserve(struct rbuf *b, size_t n)
{
        if (b->cap >= n)
                return 0;
        uint8_t *np = realloc(b->p, n);
        if (!np)
                return -ENOMEM;
        b->p = np;
        b->cap = n;
        return 0;
}

/* Read exactly [off, off+len) unless the file ends: returns bytes read. */
static ssize_t read_full(const struct local_io_ops *io, int fd, void *buf, size_t len,
                         uint64_t off)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = io->pread(io->ctx, fd, (uint8_t *)buf + got, len - got,
                                      (off_t)(off + got));
                if (n < 0)
                        return n;
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        return (ssize_t)got;
}

int local_seg_scan(const struct local_io_ops *io, int fd, struct local_seg *s,
                   uint64_t file_size, bool check_crc)
{
        struct rbuf b = { 0 };
        int stop = 0;
        uint64_t buf_off = 0;     /* file offset of b.p[0] */
        size_t buf_len = 0;
        uint64_t off = s->end;

        for (;;) {
                if (off + LOCAL_FRAME_HDR_SIZE > file_size) {
                        stop = LOCAL_STOP_EOF;
                        break;
                }
                struct local_frame f;
                int r = -EAGAIN;
                if (off >= buf_off && off < buf_off + buf_len) {
                        /* The run of frames in the buffer that follow in
                         * sequence, checksummed together (unless the caller
                         * only walks the headers); the first whose CRC
                         * fails is decoded again below (and stops). */
                        struct local_frame run[LOCAL_CRC_BATCH];
                        size_t n = 0;
                        uint64_t at = off, lsn = s->last_lsn;
                        while (n < LOCAL_CRC_BATCH && at + LOCAL_FRAME_HDR_SIZE <= file_size &&
                               at < buf_off + buf_len &&
                               local_frame_peek(b.p + (at - buf_off),
                                                buf_len - (size_t)(at - buf_off), &run[n]) > 0 &&
                               run[n].lsn == lsn + 1) {
                                at += run[n].size;
                                lsn++;
                                n++;
                        }
                        size_t ok = n && check_crc ? local_frames_check_crc(run, n) : n;
                        for (size_t i = 0; i < ok; i++) {
                                (void)local_seg_index_note(s, run[i].lsn, off);
                                s->last_lsn = run[i].lsn;
                                off += run[i].size;
                                s->end = off;
                        }
                        if (ok)
                                continue;
                        r = check_crc ? local_frame_decode(b.p + (off - buf_off),
                                                           buf_len - (size_t)(off - buf_off), &f)
                                      : local_frame_peek(b.p + (off - buf_off),
                                                         buf_len - (size_t)(off - buf_off), &f);
                }
                if (r == -EAGAIN) {
                        /* Refill from @off: a full chunk, or the whole frame
                         * if it is larger. */
                        size_t want = LOCAL_READ_CHUNK;
                        if (off >= buf_off && off + LOCAL_FRAME_HDR_SIZE <= buf_off + buf_len) {
                                uint32_t body = walu_get_be32(b.p + (off - buf_off));
                                if ((uint64_t)body + LOCAL_FRAME_HDR_SIZE > want)
                                        want = (size_t)body + LOCAL_FRAME_HDR_SIZE;
                        }
                        if (want > file_size - off)
                                want = (size_t)(file_size - off);
                        if (off == buf_off && want <= buf_len) {
                                /* The file ends inside the frame. */
                                stop = LOCAL_STOP_BAD;
                                break;
                        }
                        int e = rbuf_reserve(&b, want);
                        if (e < 0) {
                                stop = e;
                                break;
                        }
                        ssize_t n = read_full(io, fd, b.p, want, off);
                        if (n < 0) {
                                stop = (int)n;
                                break;
                        }
                        buf_off = off;
                        buf_len = (size_t)n;
                        if ((size_t)n < LOCAL_FRAME_HDR_SIZE) {
                                stop = LOCAL_STOP_EOF;
                                break;
                        }
                        continue;
                }
                if (r == 0) {
                        stop = LOCAL_STOP_ZERO;
                        break;
                }
                if (r < 0 || f.lsn != s->last_lsn + 1) {
                        stop = LOCAL_STOP_BAD;
                        break;
                }
                (void)local_seg_index_note(s, f.lsn, off);
                s->last_lsn = f.lsn;
                off += f.size;
                s->end = off;
        }
        free(b.p);
        return stop;
}

/* Find the first valid frame with an LSN above @expect_lsn in
 * [from, file_size): 1 and its offset in *at, 0 none, negative errno. */
static int later_valid_frame(const struct local_io_ops *io, int fd, uint64_t from,
                             uint64_t expect_lsn, uint64_t file_size, uint64_t *at)
{
        struct rbuf b = { 0 }, fb = { 0 };
        int found = 0;
        from = (from + LOCAL_FRAME_ALIGN - 1) & ~(uint64_t)(LOCAL_FRAME_ALIGN - 1);
        if (rbuf_reserve(&b, LOCAL_READ_CHUNK) < 0)
                return -ENOMEM;
        for (uint64_t base = from; base + LOCAL_FRAME_HDR_SIZE <= file_size && !found;) {
                size_t want = (size_t)WALU_MIN((uint64_t)LOCAL_READ_CHUNK, file_size - base);
                ssize_t n = read_full(io, fd, b.p, want, base);
                if (n < 0) {
                        found = (int)n;
                        break;
                }
                if ((size_t)n < LOCAL_FRAME_HDR_SIZE)
                        break;
                size_t last = (size_t)n - LOCAL_FRAME_HDR_SIZE;
                for (size_t i = 0; i <= last; i += LOCAL_FRAME_ALIGN) {
                        const uint8_t *h = b.p + i;
                        uint64_t lsn = walu_get_be64(h + 8);
                        if (lsn <= expect_lsn || lsn - expect_lsn > (1ull << 32))
                                continue;
                        uint32_t body = walu_get_be32(h), env = walu_get_be32(h + 4);
                        if (env > body || body > LOCAL_FRAME_MAX_BODY ||
                            base + i + LOCAL_FRAME_HDR_SIZE + body > file_size)
                                continue;
                        size_t fl = LOCAL_FRAME_HDR_SIZE + body;
                        if (rbuf_reserve(&fb, fl) < 0) {
                                found = -ENOMEM;
                                break;
                        }
                        ssize_t m = read_full(io, fd, fb.p, fl, base + i);
                        if (m < 0) {
                                found = (int)m;
                                break;
                        }
                        if ((size_t)m == fl && local_frame_decode(fb.p, fl, NULL) > 0) {
                                found = 1;
                                *at = base + i;
                                break;
                        }
                }
                base += last + LOCAL_FRAME_ALIGN;
        }
        free(b.p);
        free(fb.p);
        return found;
}

int local_seg_is_torn(const struct local_io_ops *io, int fd, uint64_t off,
                      uint64_t expect_lsn, uint64_t file_size)
{
        uint8_t hdr[LOCAL_FRAME_HDR_SIZE];
        if (off + LOCAL_FRAME_HDR_SIZE > file_size)
                return 1;
        ssize_t n = read_full(io, fd, hdr, sizeof(hdr), off);
        if (n < 0)
                return (int)n;
        if ((size_t)n < sizeof(hdr))
                return 1;
        /* Nothing valid after it: the end of what was written. */
        uint64_t next = 0;
        int later = later_valid_frame(io, fd, off + LOCAL_FRAME_ALIGN, expect_lsn, file_size,
                                      &next);
        if (later <= 0)
                return later < 0 ? later : 1;
        /* Valid frames follow.  The damaged region is the frame's own
         * extent when its length is believable, else everything up to the
         * next valid frame.  An all-zero sector in it is a part that was
         * never written (a batch torn while a later one landed): torn.
         * Otherwise written data was damaged: corruption. */
        uint32_t body = walu_get_be32(hdr), env = walu_get_be32(hdr + 4);
        uint64_t end = next;
        if (env <= body && body <= LOCAL_FRAME_MAX_BODY && off + local_frame_size(body) <= next)
                end = off + local_frame_size(body);
        uint8_t sec[512];
        for (uint64_t p = off; p < end;) {
                uint64_t stop = WALU_MIN((p / 512 + 1) * 512, end);
                size_t len = (size_t)(stop - p);
                ssize_t m = read_full(io, fd, sec, len, p);
                if (m < 0)
                        return (int)m;
                if ((size_t)m < len || all_zero(sec, len))
                        return 1;
                p = stop;
        }
        return 0;
}

/* ---- Channel scan ---- */

static int cmp_seg(const void *a, const void *b)
{
        const struct local_seg *x = *(struct local_seg *const *)a;
        const struct local_seg *y = *(struct local_seg *const *)b;
        return x->first_lsn < y->first_lsn ? -1 : x->first_lsn > y->first_lsn;
}

void local_chan_scan_done(struct local_chan_scan *sc)
{
        if (!sc)
                return;
        for (size_t i = 0; i < sc->n_segs; i++)
                local_seg_free(sc->segs[i]);
        free(sc->segs);
        sc->segs = NULL;
        sc->n_segs = 0;
}

static void set_fault(struct local_chan_scan *sc, enum local_fault_kind kind,
                      const struct local_seg *s, uint64_t off, uint64_t lsn)
{
        sc->fault.kind = kind;
        const char *slash = strrchr(s->path, '/');
        snprintf(sc->fault.segment, sizeof(sc->fault.segment), "%s",
                 slash ? slash + 1 : s->path);
        sc->fault.offset = off;
        sc->fault.lsn = lsn;
}

static int list_segments(const char *dir, struct local_chan_scan *sc, wal_error **reterr)
{
        DIR *d = opendir(dir);
        if (!d)
                return wal_error_set(reterr, -errno, 0, "local: cannot open channel directory %s: %s",
                                     dir, strerror(errno));
        size_t cap = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                uint64_t first;
                if (!local_seg_name_parse(de->d_name, &first))
                        continue;
                if (sc->n_segs == cap) {
                        cap = cap ? cap * 2 : 16;
                        struct local_seg **ns = realloc(sc->segs, cap * sizeof(*ns));
                        if (!ns) {
                                r = -ENOMEM;
                                break;
                        }
                        sc->segs = ns;
                }
                struct local_seg *s = local_seg_new(dir, first);
                if (!s) {
                        r = -ENOMEM;
                        break;
                }
                sc->segs[sc->n_segs++] = s;
        }
        closedir(d);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "local: listing %s: out of memory", dir);
        if (sc->n_segs > 1)
                qsort(sc->segs, sc->n_segs, sizeof(*sc->segs), cmp_seg);
        return 0;
}

/* Read the summary of segment @i from the header page of segment i + 1
 * into sc->prev: 1 when it is there and describes segment @i (its first LSN,
 * its last LSN just before the next one's first, its end inside the file),
 * else 0.  Any trouble reading it is left to that segment's own scan. */
static int summary_of_next(const struct local_io_ops *io, struct local_chan_scan *sc, size_t i)
{
        const struct local_seg *s = sc->segs[i], *next = sc->segs[i + 1];
        int fd = io->open(io->ctx, next->path, O_RDONLY, 0);
        if (fd < 0)
                return 0;
        uint8_t page[LOCAL_SEG_HDR_SIZE];
        ssize_t n = read_full(io, fd, page, sizeof(page), 0);
        io->close(io->ctx, fd);
        uint64_t first;
        if (n != (ssize_t)sizeof(page) || local_seg_header_check(page, sizeof(page), &first) < 0 ||
            first != next->first_lsn || local_seg_header_prev(page, sizeof(page), &sc->prev) != 1)
                return 0;
        const struct local_prev *pv = &sc->prev;
        return pv->first_lsn == s->first_lsn && pv->last_lsn + 1 == next->first_lsn &&
               pv->end <= s->size;
}

/*
 * Was the end of segment @s cut off?  1 when its file is shorter than it
 * was created and a partial frame is left at the end of the file (the
 * frame at s->end runs past it, or fewer than 24 bytes of a header that
 * are not all zero), with data before it (see "Recovery", step 4); else 0,
 * or a negative errno.
 */
static int cut_short(const struct local_io_ops *io, int fd, const struct local_seg *s)
{
        if (s->created == 0 || s->size >= s->created || s->end <= LOCAL_SEG_HDR_SIZE ||
            s->end >= s->size)
                return 0;
        uint8_t tail[LOCAL_FRAME_HDR_SIZE];
        size_t want = (size_t)WALU_MIN(s->size - s->end, (uint64_t)sizeof(tail));
        ssize_t n = read_full(io, fd, tail, want, s->end);
        if (n < 0)
                return (int)n;
        if (want == sizeof(tail))
                return 1;       /* a whole header there that the scan refused */
        return !all_zero(tail, (size_t)n);
}

/* Scan one segment; 0 to continue with the next, 1 when a fault was
 * recorded (stop), 2 when it was recorded against the segment before
 * (stop there), negative errno. */
static int scan_one(const struct local_io_ops *io, struct local_chan_scan *sc, size_t i,
                    enum local_scan_mode mode, uint64_t *expect, wal_error **reterr)
{
        struct local_seg *s = sc->segs[i];
        bool last = i + 1 == sc->n_segs;
        int fd = io->open(io->ctx, s->path, O_RDONLY, 0);
        if (fd < 0)
                return wal_error_set(reterr, fd, 0, "local: cannot open segment %s: %s", s->path,
                                     strerror(-fd));
        int r = 0;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                r = wal_error_set(reterr, -errno, 0, "local: stat %s: %s", s->path,
                                  strerror(errno));
                goto out;
        }
        s->size = (uint64_t)st.st_size;
        uint8_t hdr[LOCAL_SEG_HDR_SIZE];
        ssize_t n = read_full(io, fd, hdr, sizeof(hdr), 0);
        if (n < 0) {
                r = wal_error_set(reterr, (int)n, 0, "local: reading %s at offset 0: %s",
                                  s->path, strerror((int)-n));
                goto out;
        }
        uint64_t first = 0;
        int hc = (size_t)n >= 64 ? local_seg_header_check(hdr, (size_t)n, &first) : -EBADMSG;
        if (hc == 0)
                s->created = walu_get_be64(hdr + 24);
        uint64_t hdr_fault_off = 0;
        if (hc == 0 && local_seg_header_prev(hdr, (size_t)n, &sc->prev) < 0) {
                /* A damaged summary of the previous segment: the header
                 * page was damaged (or torn while being created). */
                hc = -EBADMSG;
                hdr_fault_off = LOCAL_PREV_OFF;
        }
        if (hc == -EPROTO) {
                r = wal_error_set(reterr, -EPROTO, 0,
                                  "local: segment %s has an unknown format version %" PRIu32,
                                  s->path, walu_get_be32(hdr + 8));
                goto out;
        }
        if (hc < 0 || first != s->first_lsn) {
                set_fault(sc, LOCAL_FAULT_BAD_HEADER, s, hdr_fault_off,
                          *expect ? *expect : s->first_lsn);
                /* Torn while being created only if it could be the next
                 * segment: named by the next LSN (or the only one), its
                 * first bytes none, zeros or the magic. */
                bool could_be = (*expect == 0 || s->first_lsn == *expect) &&
                                (n < 8 || all_zero(hdr, 8) ||
                                 memcmp(hdr, LOCAL_SEG_MAGIC, 8) == 0);
                if (last && could_be) {
                        /* Torn while being created if no frame follows. */
                        uint8_t fh[LOCAL_FRAME_HDR_SIZE];
                        ssize_t m = read_full(io, fd, fh, sizeof(fh), LOCAL_SEG_HDR_SIZE);
                        if (m < 0) {
                                r = wal_error_set(reterr, (int)m, 0, "local: reading %s: %s",
                                                  s->path, strerror((int)-m));
                                goto out;
                        }
                        if ((size_t)m < sizeof(fh) || all_zero(fh, sizeof(fh))) {
                                sc->fault.kind = LOCAL_FAULT_TORN_TAIL;
                                sc->empty_last_removed_ok = true;
                        }
                }
                r = 1;
                goto out;
        }
        if (*expect && s->first_lsn != *expect) {
                const struct local_seg *p = i > 0 ? sc->segs[i - 1] : NULL;
                if (p && s->first_lsn > *expect && p->size < p->created) {
                        /* The one before was cut short (its file is smaller
                         * than it was created): the fault is where its data
                         * stops, not here. */
                        set_fault(sc, LOCAL_FAULT_BAD_FRAME, p, p->end, *expect);
                        r = 2;
                        goto out;
                }
                set_fault(sc, LOCAL_FAULT_LSN_GAP, s, 0, *expect);
                r = 1;
                goto out;
        }
        *expect = s->first_lsn;
        bool crc = last || mode == LOCAL_SCAN_FULL;
        int stop = 0;
        if (!crc && summary_of_next(io, sc, i) == 1) {
                /* The next segment's header says where this one ends and
                 * holds its index: walk only from the last indexed frame
                 * to that end, and trust the summary if they agree. */
                const struct local_prev *pv = &sc->prev;
                for (size_t k = 0; k < pv->n_index; k++)
                        (void)local_seg_index_note(s, pv->index[k].lsn, pv->index[k].off);
                if (s->n_index) {
                        s->end = s->index[s->n_index - 1].off;
                        s->last_lsn = s->index[s->n_index - 1].lsn - 1;
                }
                stop = local_seg_scan(io, fd, s, s->size, false);
                if (stop < 0 || s->end != pv->end || s->last_lsn != pv->last_lsn) {
                        s->end = LOCAL_SEG_HDR_SIZE;
                        s->last_lsn = s->first_lsn - 1;
                        s->n_index = 0;
                        stop = 0;
                }
        }
        if (stop == 0)
                stop = local_seg_scan(io, fd, s, s->size, crc);
        if (stop == LOCAL_STOP_BAD && !crc) {
                /* The header walk broke off: scan the segment again with
                 * its CRCs, so the fault names the first frame that really
                 * fails (a flipped length bit shows only at the next
                 * header, the CRC of the frame itself fails). */
                s->end = LOCAL_SEG_HDR_SIZE;
                s->last_lsn = s->first_lsn - 1;
                s->n_index = 0;
                stop = local_seg_scan(io, fd, s, s->size, true);
        }
        if (stop < 0) {
                r = wal_error_set(reterr, stop, 0, "local: reading %s: %s", s->path,
                                  strerror(-stop));
                goto out;
        }
        *expect = s->last_lsn + 1;
        int cut = 0;
        if (last && (stop == LOCAL_STOP_BAD || stop == LOCAL_STOP_EOF)) {
                cut = cut_short(io, fd, s);
                if (cut < 0) {
                        r = wal_error_set(reterr, cut, 0, "local: reading %s: %s", s->path,
                                          strerror(-cut));
                        goto out;
                }
        }
        if (stop == LOCAL_STOP_BAD || cut) {
                enum local_fault_kind kind = LOCAL_FAULT_BAD_FRAME;
                if (last && !cut) {
                        int t = local_seg_is_torn(io, fd, s->end, *expect, s->size);
                        if (t < 0) {
                                r = wal_error_set(reterr, t, 0, "local: reading %s: %s",
                                                  s->path, strerror(-t));
                                goto out;
                        }
                        if (t)
                                kind = LOCAL_FAULT_TORN_TAIL;
                }
                set_fault(sc, kind, s, s->end, *expect);
                r = 1;
        }
out:
        io->close(io->ctx, fd);
        return r;
}

int local_chan_scan(const struct local_io_ops *io, const char *dir, enum local_scan_mode mode,
                    struct local_chan_scan *ret, wal_error **reterr)
{
        *ret = (struct local_chan_scan){ 0 };
        int r = list_segments(dir, ret, reterr);
        if (r < 0)
                return r;
        ret->fault.segments = ret->n_segs;
        uint64_t expect = 0;
        for (size_t i = 0; i < ret->n_segs; i++) {
                r = scan_one(io, ret, i, mode, &expect, reterr);
                if (r < 0) {
                        local_chan_scan_done(ret);
                        return r;
                }
                if (r > 0) {
                        /* Keep the segments up to the faulty one. */
                        size_t keep = r == 2 ? i : i + 1;
                        for (size_t j = keep; j < ret->n_segs; j++)
                                local_seg_free(ret->segs[j]);
                        ret->n_segs = keep;
                        break;
                }
        }
        if (ret->n_segs > 0) {
                ret->fault.first_lsn = ret->segs[0]->first_lsn;
                ret->fault.last_lsn = ret->segs[ret->n_segs - 1]->last_lsn;
                if (ret->fault.kind == LOCAL_FAULT_BAD_HEADER ||
                    ret->fault.kind == LOCAL_FAULT_LSN_GAP ||
                    (ret->fault.kind == LOCAL_FAULT_TORN_TAIL && ret->empty_last_removed_ok)) {
                        /* Nothing of the faulty segment counts. */
                        struct local_seg *s = ret->segs[ret->n_segs - 1];
                        ret->fault.last_lsn = s->first_lsn - 1;
                        if (ret->n_segs > 1)
                                ret->fault.last_lsn = ret->segs[ret->n_segs - 2]->last_lsn;
                }
        }
        return 0;
}

/* ---- Term file ---- */

int local_term_read(const struct local_io_ops *io, const char *dir, int64_t *ret)
{
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/term", dir) >= sizeof(path))
                return -ENAMETOOLONG;
        int fd = io->open(io->ctx, path, O_RDONLY, 0);
        if (fd == -ENOENT) {
                *ret = -1;
                return 0;
        }
        if (fd < 0)
                return fd;
        char buf[32] = { 0 };
        ssize_t n = read_full(io, fd, buf, sizeof(buf) - 1, 0);
        io->close(io->ctx, fd);
        if (n < 0)
                return (int)n;
        /* Exactly digits and an optional newline: anything else is damage
         * (the file is only ever replaced whole, so it cannot be torn). */
        size_t len = (size_t)n, digits = 0;
        while (digits < len && buf[digits] >= '0' && buf[digits] <= '9')
                digits++;
        if (digits == 0 || digits > 18 || len - digits > 1 ||
            (len > digits && buf[digits] != '\n'))
                return -EBADMSG;
        *ret = strtoll(buf, NULL, 10);
        return 0;
}

int local_term_write(const struct local_io_ops *io, const char *dir, int64_t term)
{
        char tmp[4096], dst[4096];
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s/term.tmp", dir) >= sizeof(tmp) ||
            (size_t)snprintf(dst, sizeof(dst), "%s/term", dir) >= sizeof(dst))
                return -ENAMETOOLONG;
        int fd = io->open(io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
                return fd;
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%" PRId64 "\n", term);
        int r = local_io_write_full(io, fd, buf, (size_t)len, 0);
        if (r == 0)
                r = io->fsync(io->ctx, fd);
        io->close(io->ctx, fd);
        if (r == 0)
                r = io->rename(io->ctx, tmp, dst);
        if (r == 0)
                r = local_io_fsync_dir(io, dir);
        return r;
}

/*
 * The term of the channel's last record: its envelope's term.  A local log's
 * terms never decrease (a writer holds the channel's lock, and an older term
 * is fenced before it can append after a newer one), so this is the highest
 * term that wrote.  @returns 0 with *ret, -ENOENT when the channel holds no
 * record, -EBADMSG when the last frame does not decode, or a read error.
 */
static int last_record_term(const struct local_io_ops *io, const struct local_chan_scan *sc,
                            int64_t *ret)
{
        const struct local_seg *s = NULL;
        for (size_t i = sc->n_segs; i-- > 0;) {
                if (sc->segs[i]->last_lsn >= sc->segs[i]->first_lsn) {
                        s = sc->segs[i];
                        break;
                }
        }
        if (!s)
                return -ENOENT;
        uint64_t off, lsn;
        local_seg_index_find(s, s->last_lsn, &off, &lsn);
        int fd = io->open(io->ctx, s->path, O_RDONLY, 0);
        if (fd < 0)
                return fd;
        struct rbuf b = { 0 };
        int r = 0;
        for (;;) {
                uint8_t hdr[LOCAL_FRAME_HDR_SIZE];
                ssize_t n = read_full(io, fd, hdr, sizeof(hdr), off);
                if (n < (ssize_t)sizeof(hdr)) {
                        r = n < 0 ? (int)n : -EBADMSG;
                        break;
                }
                /* The scan passed these frames; check the walk stays on them. */
                uint32_t body = walu_get_be32(hdr + 0);
                if (walu_get_be64(hdr + 8) != lsn || body > LOCAL_FRAME_MAX_BODY) {
                        r = -EBADMSG;
                        break;
                }
                uint64_t size = local_frame_size(body);
                if (lsn < s->last_lsn) {
                        off += size;
                        lsn++;
                        continue;
                }
                r = rbuf_reserve(&b, (size_t)size);
                if (r < 0)
                        break;
                n = read_full(io, fd, b.p, (size_t)size, off);
                if (n < 0) {
                        r = (int)n;
                        break;
                }
                struct local_frame f;
                struct wal_msg_view v;
                if (local_frame_decode(b.p, (size_t)n, &f) <= 0 ||
                    walu_envelope_view(f.env, f.env_len, &v, NULL) < 0) {
                        r = -EBADMSG;
                        break;
                }
                *ret = v.term;
                r = 0;
                break;
        }
        free(b.p);
        io->close(io->ctx, fd);
        return r;
}

int local_last_term(const struct local_io_ops *io, const char *chan_dir, int64_t *ret,
                    wal_error **reterr)
{
        struct local_chan_scan sc;
        *ret = -1;
        int r = local_chan_scan(io, chan_dir, LOCAL_SCAN_OPEN, &sc, reterr);
        if (r < 0)
                return r;
        if (sc.fault.kind == LOCAL_FAULT_NONE || sc.fault.kind == LOCAL_FAULT_TORN_TAIL)
                r = last_record_term(io, &sc, ret);
        local_chan_scan_done(&sc);
        if (r == -ENOENT)
                r = 0;
        if (r < 0)
                return wal_error_set(reterr, r, 0, "local: reading the last record's term in "
                                     "%s: %s", chan_dir, strerror(-r));
        return 0;
}

/* A clean scan's verdict on the term file: a fault of kind BAD_TERM when it
 * exists and is damaged.  @returns 0 or a read error. */
static int check_term(const struct local_io_ops *io, const char *chan_dir, struct local_fault *f)
{
        int64_t t;
        int r = local_term_read(io, chan_dir, &t);
        if (r != -EBADMSG)
                return r;
        f->kind = LOCAL_FAULT_BAD_TERM;
        snprintf(f->segment, sizeof(f->segment), "term");
        f->offset = 0;
        f->lsn = 0;
        return 0;
}

/* ---- Verify and repair ---- */

int local_verify(const char *chan_dir, struct local_fault *ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(chan_dir && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local_verify: NULL argument"));
        struct local_chan_scan sc;
        int r = local_chan_scan(local_io_current_ops(), chan_dir, LOCAL_SCAN_FULL, &sc, reterr);
        if (r < 0)
                return r;
        *ret = sc.fault;
        local_chan_scan_done(&sc);
        if (ret->kind == LOCAL_FAULT_NONE) {
                r = check_term(local_io_current_ops(), chan_dir, ret);
                if (r < 0)
                        return wal_error_set(reterr, r, 0, "local: cannot read %s/term: %s",
                                             chan_dir, strerror(-r));
        }
        return 0;
}

/*
 * Repair a damaged term file: keep its bytes as "term.cut", then record the
 * term of the channel's last record (the highest that wrote; see
 * last_record_term), or leave no term file when the channel holds no record
 * (the next read-write open records its own).  A writer that had opened with
 * a higher term and crashed before its first record is not remembered: no
 * file says it existed.
 */
static int repair_term(const struct local_io_ops *io, const char *chan_dir,
                       const struct local_chan_scan *sc, wal_error **reterr)
{
        char from[4096], to[4200];
        snprintf(from, sizeof(from), "%s/term", chan_dir);
        snprintf(to, sizeof(to), "%s/term.cut", chan_dir);
        int64_t term = -1;
        int r = last_record_term(io, sc, &term);
        if (r < 0 && r != -ENOENT)
                return wal_error_set(reterr, r, 0, "local: reading the last record's term "
                                     "in %s: %s", chan_dir, strerror(-r));
        r = io->rename(io->ctx, from, to);
        if (r == 0 && term >= 0)
                r = local_term_write(io, chan_dir, term);
        else if (r == 0)
                r = local_io_fsync_dir(io, chan_dir);
        if (r < 0)
                return wal_error_set(reterr, r, 0, "local: replacing %s: %s", from,
                                     strerror(-r));
        if (term >= 0)
                walu_log(WAL_LOG_WARNING, "local: repaired %s: the damaged term file is now "
                         "term.cut; term %" PRId64 " (the last record's) recorded", chan_dir,
                         term);
        else
                walu_log(WAL_LOG_WARNING, "local: repaired %s: the damaged term file is now "
                         "term.cut; the channel holds no record, so no term is recorded",
                         chan_dir);
        return 0;
}


/* Copy [off, size) of @path (open as @fd) to @side, fsynced. */
static int copy_tail(const struct local_io_ops *io, int fd, uint64_t off, uint64_t size,
                     const char *side)
{
        int out = io->open(io->ctx, side, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0)
                return out;
        int r = 0;
        uint8_t *buf = malloc(LOCAL_READ_CHUNK);
        if (!buf)
                r = -ENOMEM;
        for (uint64_t p = off; r == 0 && p < size;) {
                size_t want = (size_t)WALU_MIN((uint64_t)LOCAL_READ_CHUNK, size - p);
                ssize_t n = read_full(io, fd, buf, want, p);
                if (n <= 0) {
                        r = n < 0 ? (int)n : 0;
                        break;
                }
                r = local_io_write_full(io, out, buf, (size_t)n, p - off);
                p += (uint64_t)n;
        }
        free(buf);
        if (r == 0)
                r = io->fdatasync(io->ctx, out);
        io->close(io->ctx, out);
        return r;
}

int local_repair(const char *chan_dir, struct local_fault *ret, wal_error **reterr)
{
        WAL_ASSERT_RETURN(chan_dir && ret,
                          wal_error_set(reterr, -EINVAL, 0, "local_repair: NULL argument"));
        const struct local_io_ops *io = local_io_current_ops();
        char path[4096];
        snprintf(path, sizeof(path), "%s/lock", chan_dir);
        int lfd = io->open(io->ctx, path, O_RDWR | O_CREAT, 0644);
        if (lfd < 0)
                return wal_error_set(reterr, lfd, 0, "local: cannot open %s: %s", path,
                                     strerror(-lfd));
        if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;
                io->close(io->ctx, lfd);
                return wal_error_set(reterr, e == EWOULDBLOCK ? -EBUSY : -e, 0,
                                     "local: channel %s is open by a writer; close it before "
                                     "repairing", chan_dir);
        }
        struct local_chan_scan sc;
        int r = local_chan_scan(io, chan_dir, LOCAL_SCAN_FULL, &sc, reterr);
        if (r < 0)
                goto out_lock;
        *ret = sc.fault;
        if (sc.fault.kind == LOCAL_FAULT_NONE)
                goto term;

        /* The faulty segment is the last one sc kept. */
        struct local_seg *s = sc.segs[sc.n_segs - 1];
        bool whole = sc.fault.kind != LOCAL_FAULT_BAD_FRAME &&
                     !(sc.fault.kind == LOCAL_FAULT_TORN_TAIL && !sc.empty_last_removed_ok);
        if (whole) {
                snprintf(path, sizeof(path), "%s.cut", s->path);
                r = io->rename(io->ctx, s->path, path);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "local: moving %s aside: %s", s->path,
                                      strerror(-r));
                        goto out;
                }
        } else {
                int fd = io->open(io->ctx, s->path, O_RDWR, 0);
                if (fd < 0) {
                        r = wal_error_set(reterr, fd, 0, "local: cannot open %s: %s", s->path,
                                          strerror(-fd));
                        goto out;
                }
                snprintf(path, sizeof(path), "%s.cut-%" PRIu64, s->path, sc.fault.offset);
                r = copy_tail(io, fd, sc.fault.offset, s->size, path);
                if (r == 0)
                        r = io->ftruncate(io->ctx, fd, (off_t)sc.fault.offset);
                if (r == 0 && s->size > sc.fault.offset)
                        r = io->fallocate(io->ctx, fd, (off_t)sc.fault.offset,
                                          (off_t)(s->size - sc.fault.offset));
                if (r == 0)
                        r = io->fdatasync(io->ctx, fd);
                io->close(io->ctx, fd);
                if (r < 0) {
                        wal_error_set(reterr, r, 0, "local: cutting %s at offset %" PRIu64 ": %s",
                                      s->path, sc.fault.offset, strerror(-r));
                        goto out;
                }
        }
        /* Every later segment is cut entirely: move it aside. */
        {
                DIR *d = opendir(chan_dir);
                struct dirent *de;
                while (d && (de = readdir(d))) {
                        uint64_t first;
                        if (!local_seg_name_parse(de->d_name, &first) || first <= s->first_lsn)
                                continue;
                        char from[4096], to[4200];
                        snprintf(from, sizeof(from), "%s/%s", chan_dir, de->d_name);
                        snprintf(to, sizeof(to), "%s.cut", from);
                        int e = io->rename(io->ctx, from, to);
                        if (e < 0 && r == 0)
                                r = wal_error_set(reterr, e, 0, "local: moving %s aside: %s",
                                                  from, strerror(-e));
                }
                if (d)
                        closedir(d);
        }
        if (r == 0) {
                r = local_io_fsync_dir(io, chan_dir);
                if (r < 0)
                        wal_error_set(reterr, r, 0, "local: fsync of directory %s: %s", chan_dir,
                                      strerror(-r));
        }
        if (r == 0)
                walu_log(WAL_LOG_WARNING,
                         "local: repaired %s: cut at %s offset %" PRIu64 " (%s), records up to "
                         "LSN %" PRIu64 " kept",
                         chan_dir, sc.fault.segment, sc.fault.offset,
                         local_fault_kind_name(sc.fault.kind), sc.fault.last_lsn);
term:
        /* The term file last: after a cut, the last record is the one kept. */
        if (r == 0) {
                struct local_fault tf = { .kind = LOCAL_FAULT_NONE };
                r = check_term(io, chan_dir, &tf);
                if (r < 0)
                        wal_error_set(reterr, r, 0, "local: cannot read %s/term: %s", chan_dir,
                                      strerror(-r));
                else if (tf.kind != LOCAL_FAULT_NONE)
                        r = repair_term(io, chan_dir, &sc, reterr);
                if (r == 0 && ret->kind == LOCAL_FAULT_NONE)
                        *ret = (struct local_fault){ .kind = tf.kind, .segment = { 0 },
                                                     .first_lsn = ret->first_lsn,
                                                     .last_lsn = ret->last_lsn,
                                                     .segments = ret->segments };
                if (r == 0 && ret->kind == LOCAL_FAULT_BAD_TERM)
                        snprintf(ret->segment, sizeof(ret->segment), "term");
        }
out:
        local_chan_scan_done(&sc);
out_lock:
        io->close(io->ctx, lfd);
        return r;
}
