/*
 * endio: task-context I/O completion and uncached ("dontcache") buffered I/O
 * on files and raw block devices, for C and C++.
 *
 * Generated from crates/endio-capi/src by its build script; do not edit.
 * Link with -lendio (libendio.so or libendio.a; the static library also
 * needs -lpthread -ldl -lm).
 *
 * Every call returns 0 (or a byte count) on success and a negated errno on
 * failure, as io_uring does; endio_last_error_message() then names the
 * problem and the fix. No call unwinds into C: an internal panic returns
 * -ENDIO_EPANIC.
 *
 * Context: every callback runs in task context, on a completer worker
 * thread, never on the thread that reaps the I/O. So every call of this
 * header may be made from a callback (blocking ones included), except the
 * few that would wait for the callback itself: endio_device_drain and
 * endio_device_close of the callback's own device, and endio_engine_free,
 * which return -EDEADLK there. No call is made in atomic context.
 *
 * Buffers: the data of every read and write is copied between the caller's
 * buffer and an endio buffer aligned for O_DIRECT. That copy is the cost of
 * a safe boundary: endio never holds a pointer into the caller's memory
 * after the call returns, except for endio_submit_read, which writes the
 * data into the caller's buffer just before its callback runs.
 */


#ifndef ENDIO_H
#define ENDIO_H

#include <stddef.h>
#include <stdint.h>

// `endio_open`: allow reads.
#define ENDIO_OPEN_READ (1 << 0)

// `endio_open`: allow writes (and `endio_fdatasync`).
#define ENDIO_OPEN_WRITE (1 << 1)

// `endio_open`: create a regular file that does not exist (needs WRITE).
#define ENDIO_OPEN_CREATE (1 << 2)

// `endio_open`: `O_DIRECT`, bypass the page cache: offsets and lengths
// must be multiples of the device's logical block size (buffers need no
// alignment: endio copies them into aligned ones).
#define ENDIO_OPEN_DIRECT (1 << 3)

// `endio_open`: uncached buffered I/O for every read and write: the pages
// an I/O brings into the page cache leave it once the I/O is done (a
// write's after its write-back). The kernel's `RWF_DONTCACHE` where it has
// it, else endio's emulation. Not with DIRECT.
#define ENDIO_OPEN_DONTCACHE (1 << 4)

// `endio_open`: DONTCACHE through endio's emulation even where the kernel
// has `RWF_DONTCACHE`.
#define ENDIO_OPEN_DONTCACHE_EMULATED (1 << 5)

// `endio_open`: open a block device exclusively (`O_EXCL`): fails with
// `-EBUSY` if it is mounted or held by another.
#define ENDIO_OPEN_EXCLUSIVE (1 << 6)

// `endio_residency.source`: `cachestat(2)`, with dirty and write-back
// counts.
#define ENDIO_RESIDENCY_CACHESTAT 0

// `endio_residency.source`: `mincore(2)` (kernels before 6.5): cached
// bytes only, dirty and write-back read 0.
#define ENDIO_RESIDENCY_MINCORE 1

// `endio_engine_options.backend`: io_uring, falling back to the thread
// pool where io_uring cannot be used; `ENDIO_BACKEND` in the environment
// (`uring`, `threads`, `null`) overrides it.
#define ENDIO_BACKEND_AUTO 0

// io_uring only: `endio_engine_new` fails where it cannot be used.
#define ENDIO_BACKEND_URING 1

// A pool of threads doing `pread`/`pwrite`.
#define ENDIO_BACKEND_THREADS 2

// In-memory devices, no system calls: the completion path alone.
#define ENDIO_BACKEND_NULL 3

// Returned (negated) when endio panicked inside a call: a bug in endio,
// not an I/O error. The call did nothing it reports; the message says
// where.
#define ENDIO_EPANIC 10000

// `endio_submit_write`: uncached buffered I/O for this write alone (on a
// buffered device).
#define ENDIO_IO_DONTCACHE (1 << 0)

// `endio_submit_write`: the callback runs only after this write's data
// was written back, with the write-back's result (a negated errno if it
// failed). Written back is not durable: `endio_fdatasync` flushes the
// device's cache.
#define ENDIO_IO_WAIT_WRITEBACK (1 << 1)

// An open file or block device. Opaque.
struct endio_device;

// An engine: opens devices and completes their I/O. Opaque.
struct endio_engine;

// The page-cache state of a byte range of a device.
struct endio_residency {
  // Bytes of the range in the page cache.
  uint64_t cached_bytes;
  // Of those, dirty.
  uint64_t dirty_bytes;
  // Of those, under write-back.
  uint64_t writeback_bytes;
  // The page size the counts are made of.
  uint64_t page_size;
  // `ENDIO_RESIDENCY_CACHESTAT` or `ENDIO_RESIDENCY_MINCORE`.
  uint32_t source;
};

// Options of `endio_engine_new`; all zero (or a NULL pointer) means the
// defaults.
struct endio_engine_options {
  // One of the `ENDIO_BACKEND_*` values.
  uint32_t backend;
  // In-flight I/Os per lane, 1..=4096; 0 for the default (128).
  uint32_t queue_depth;
  // Threads of the thread-pool backend, 1..=256; 0 for the default (8).
  uint32_t threads;
};

// Counters of the engine's completer, summed over its CPUs.
struct endio_stats {
  // Completions deferred to a worker (task context).
  uint64_t deferred;
  // Completions whose handler ran inline, where they completed.
  uint64_t inlined;
  // Deferred completions whose handler (callback) has run.
  uint64_t handlers;
  // Batches of deferred completions a worker took.
  uint64_t batches;
  // The largest such batch.
  uint64_t batch_len_max;
  // Worker runs that ended because their budget was spent.
  uint64_t requeues;
  // Times a worker slept for lack of work and was woken.
  uint64_t wakeups;
  // Handlers that panicked (contained).
  uint64_t panics;
  // Rescue threads started for a worker stuck in one callback.
  uint64_t rescues;
  // I/Os submitted to the engine and not yet completed.
  uint64_t in_flight;
};

// A completion callback: `result` is the bytes transferred or a negated
// errno. It runs once per accepted submit, in task context on a completer
// worker thread (never in the caller's thread, never in atomic context),
// and may block and call endio (see the header's notes on context). It
// must not unwind (a C++ exception) or `longjmp` out.
typedef void (*endio_callback)(void *user_data, int64_t result);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Opens `path` (a regular file or a block device) on `engine` with
// `flags` (`ENDIO_OPEN_*`, at least READ or WRITE) and stores the device
// in `*out`. `size`, if not 0, grows a regular file to at least that many
// bytes (sparsely; needs WRITE). Returns 0 or a negated errno, as
// `open(2)` would: `-ENOENT`, `-EACCES`, `-EISDIR`, `-EBUSY`, `-EROFS`;
// `-EINVAL` for a NULL argument, an unknown flag or flags that exclude
// each other (DIRECT with DONTCACHE).
//
// # Safety
//
// `engine` is a live engine; `path` is NULL or a NUL-terminated string;
// `out` points to writable storage for a pointer.
int endio_open(const struct endio_engine *engine,
               const char *path,
               uint32_t flags,
               uint64_t size,
               struct endio_device **out);

// Waits for the device's I/O and callbacks (as `endio_device_drain`),
// then closes it and frees the handle. NULL is allowed and does nothing.
// Returns 0, or `-EDEADLK` (and closes nothing) when called from one of
// the device's own callbacks, which it would wait for.
//
// # Safety
//
// `dev` is NULL or a device from `endio_open` not yet closed; it is not
// used again after a 0 return.
int endio_device_close(struct endio_device *dev);

// The page-cache residency of `len` bytes at `offset` of the device (`len`
// 0: to its end; both 0: the whole file or device), in `*out`. Returns 0
// or a negated errno.
//
// # Safety
//
// `dev` is a live device; `out` points to a writable `endio_residency`.
int endio_residency(const struct endio_device *dev,
                    uint64_t offset,
                    uint64_t len,
                    struct endio_residency *out);

// The write-back errors endio has seen on the device: how many (`*count`)
// and the errno of the first (`*first_errno`, 0 if none), from the
// write-back waits of dontcache and WAIT_WRITEBACK writes and from failed
// `endio_fdatasync` calls. Looking consumes nothing: the next
// `endio_fdatasync` still reports every write-back error since the
// previous one. Either pointer may be NULL. Returns 0 or `-EINVAL`.
//
// # Safety
//
// `dev` is a live device; `count` and `first_errno` are NULL or writable.
int endio_writeback_errors(const struct endio_device *dev, uint64_t *count, int *first_errno);

// Asks the kernel whether write-back of the device's data has failed,
// where no `endio_fdatasync` follows (it consumes nothing a sync would
// report). Returns 0, or the negated errno of the first write-back error
// endio has seen on the device.
//
// # Safety
//
// `dev` is a live device.
int endio_check_writeback(const struct endio_device *dev);

// Waits until every I/O submitted to the device has completed, its
// callback has returned (those of I/O submitted by callbacks too), and
// dontcache's drop-behind is done. Returns 0, or `-EDEADLK` when called
// from one of the device's own callbacks, which it would wait for.
//
// # Safety
//
// `dev` is a live device.
int endio_device_drain(const struct endio_device *dev);

// Starts an engine and stores it in `*out`; returns 0 or a negated errno
// (`-EINVAL` for a NULL `out` or a bad option, `-EOPNOTSUPP` when
// `ENDIO_BACKEND_URING` was asked for and io_uring cannot be used).
//
// # Safety
//
// `options` is NULL or points to a valid `endio_engine_options`; `out`
// points to writable storage for a pointer.
int endio_engine_new(const struct endio_engine_options *options, struct endio_engine **out);

// Shuts the engine down and frees it: its threads stop after completing
// (or cancelling, with `-ECANCELED`) the I/O they hold. Devices still
// open refuse new I/O with `-ESHUTDOWN`; close them (before, preferably).
// NULL is allowed and does nothing. Returns 0, or `-EDEADLK` (and frees
// nothing) when called from a callback, whose worker it would wait for.
//
// # Safety
//
// `engine` is NULL or a pointer from `endio_engine_new` not yet freed; it
// is not used again after a 0 return.
int endio_engine_free(struct endio_engine *engine);

// Fills `*out` with the engine's counters; returns 0 or `-EINVAL`.
//
// # Safety
//
// `engine` is a live engine; `out` points to a writable `endio_stats`.
int endio_stats(const struct endio_engine *engine, struct endio_stats *out);

// The message of the calling thread's last failed endio call: what went
// wrong, on which file, and what to do about it. Empty if no call of this
// thread has failed. Like `errno`, a successful call leaves it as it
// was. The string belongs to endio and stays valid until the next failed
// endio call of this thread.
const char *endio_last_error_message(void);

// A short description of an error code, negated or not (`-ENOENT` and
// `ENOENT` alike; `ENDIO_EPANIC` included), as `strerror` gives it. The
// string belongs to endio and stays valid until the next
// `endio_strerror` of this thread.
const char *endio_strerror(int err);

// Writes `len` bytes of `buf` at `offset` and waits: returns the bytes
// written or a negated errno. On a buffered device the data is then in
// the page cache (on a DONTCACHE device, written back too); on a DIRECT
// one, at the device. `len` 0 returns 0.
//
// # Safety
//
// `dev` is a live device; `buf` points to `len` readable bytes (or is
// NULL with `len` 0).
int64_t endio_pwrite(const struct endio_device *dev, const void *buf, size_t len, uint64_t offset);

// Reads up to `len` bytes at `offset` into `buf` and waits: returns the
// bytes read (fewer at the end of a file, 0 past it) or a negated errno.
//
// # Safety
//
// `dev` is a live device; `buf` points to `len` writable bytes (or is
// NULL with `len` 0).
int64_t endio_pread(const struct endio_device *dev, void *buf, size_t len, uint64_t offset);

// Makes the device's written data durable (`fdatasync`) and waits.
// Returns 0, or a negated errno, also when the write-back of an earlier
// write failed (then that data is not on the device; see
// `endio_writeback_errors`).
//
// # Safety
//
// `dev` is a live device.
int endio_fdatasync(const struct endio_device *dev);

// Submits a write of `len` bytes of `buf` at `offset` and returns at
// once: 0 if it was accepted (then `cb(user_data, result)` runs exactly
// once, in task context, when it completes), or a negated errno if it was
// refused (then `cb` never runs). `flags`: 0, `ENDIO_IO_DONTCACHE`,
// `ENDIO_IO_WAIT_WRITEBACK`. The data is copied before this returns: `buf`
// may be reused at once. Waits for a free slot when all are taken.
//
// # Safety
//
// `dev` is a live device; `buf` points to `len` readable bytes; `cb` and
// `user_data` may be used from another thread until the callback returns.
int endio_submit_write(const struct endio_device *dev,
                       const void *buf,
                       size_t len,
                       uint64_t offset,
                       uint32_t flags,
                       endio_callback cb,
                       void *user_data);

// Submits a read of up to `len` bytes at `offset` into `buf` and returns
// at once: 0 if it was accepted (then the data is copied into `buf` and
// `cb(user_data, result)` runs exactly once, in task context, with the
// bytes read or a negated errno), or a negated errno if it was refused
// (then `cb` never runs). `flags`: 0 or `ENDIO_IO_DONTCACHE`. `buf` must
// stay valid, and untouched, until the callback runs.
//
// # Safety
//
// `dev` is a live device; `buf` points to `len` writable bytes that stay
// valid until the callback returns; `cb` and `user_data` may be used from
// another thread until then.
int endio_submit_read(const struct endio_device *dev,
                      void *buf,
                      size_t len,
                      uint64_t offset,
                      uint32_t flags,
                      endio_callback cb,
                      void *user_data);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* ENDIO_H */
