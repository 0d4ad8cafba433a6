/*
 * The C API's checks, run by tests/c_api.rs:
 *
 *   test DIR          bad arguments and their errno, callbacks once per
 *                     submit, blocking calls from a callback, a 64 MiB
 *                     dontcache write that leaves the page cache near
 *                     empty (DIR on a disk filesystem)
 *   test --failing DEV   on a block device whose writes fail past its
 *                     free space: the sync fails, the errors are counted
 *
 * Prints one line per check and "N passed, M failed"; exits non-zero if
 * any failed.
 */
#include <endio.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1u << 20)

static int passed, failed;

static void check(int ok, const char *what) {
    printf("%s: %s", ok ? "ok" : "FAILED", what);
    if (!ok)
        printf(" (last error: %s)", endio_last_error_message());
    printf("\n");
    if (ok)
        passed++;
    else
        failed++;
}

struct counts {
    atomic_long calls, bytes, bad;
};

static void count(void *user_data, int64_t result) {
    struct counts *c = user_data;
    atomic_fetch_add(&c->calls, 1);
    if (result > 0)
        atomic_fetch_add(&c->bytes, result);
    else
        atomic_fetch_add(&c->bad, 1);
}

/* A callback that makes blocking calls, as task context allows. */
struct nested {
    struct endio_device *dev;
    int64_t read;
    int drain;
    atomic_int ran;
};

static void blocking_in_callback(void *user_data, int64_t result) {
    struct nested *n = user_data;
    char b[4096];
    (void)result;
    n->read = endio_pread(n->dev, b, sizeof b, 0);
    n->drain = endio_device_drain(n->dev);
    atomic_store(&n->ran, 1);
}

static struct endio_engine *engine_or_die(void) {
    struct endio_engine *e;
    int rc = endio_engine_new(NULL, &e);
    if (rc < 0) {
        printf("FAILED: endio_engine_new: %s\n", endio_last_error_message());
        exit(1);
    }
    return e;
}

static void bad_arguments(struct endio_engine *e, const char *dir) {
    struct endio_device *d = NULL;
    char path[4096];
    check(endio_open(e, NULL, ENDIO_OPEN_READ, 0, &d) == -EINVAL && strstr(endio_last_error_message(), "path is NULL"),
          "a NULL path returns -EINVAL and says so");
    snprintf(path, sizeof path, "%s/missing", dir);
    check(endio_open(e, path, ENDIO_OPEN_READ, 0, &d) == -ENOENT && strstr(endio_last_error_message(), "missing"),
          "a missing file returns -ENOENT and names it");
    check(endio_open(e, path, ENDIO_OPEN_READ | (1u << 30), 0, &d) == -EINVAL, "an unknown flag returns -EINVAL");
    check(endio_open(e, path, ENDIO_OPEN_WRITE | ENDIO_OPEN_CREATE | ENDIO_OPEN_DIRECT | ENDIO_OPEN_DONTCACHE, 0, &d) ==
              -EINVAL,
          "DIRECT with DONTCACHE returns -EINVAL");
    check(endio_open(NULL, path, ENDIO_OPEN_READ, 0, &d) == -EINVAL, "a NULL engine returns -EINVAL");
    check(d == NULL, "a failed open leaves *out alone");
    check(endio_pwrite(NULL, "x", 1, 0) == -EINVAL, "a NULL device returns -EINVAL");
    check(endio_stats(e, NULL) == -EINVAL, "a NULL out returns -EINVAL");
    check(strcmp(endio_strerror(-ENOENT), "No such file or directory") == 0, "endio_strerror takes -errno");
    check(endio_device_close(NULL) == 0 && endio_engine_free(NULL) == 0, "closing and freeing NULL do nothing");

    snprintf(path, sizeof path, "%s/small", dir);
    int rc = endio_open(e, path, ENDIO_OPEN_WRITE | ENDIO_OPEN_CREATE, 0, &d);
    check(rc == 0, "open a new file write-only");
    if (rc < 0)
        return;
    char b[4096] = {0};
    check(endio_pread(d, b, sizeof b, 0) == -EBADF, "a read on a write-only device returns -EBADF");
    check(endio_submit_write(d, b, sizeof b, 0, 0, NULL, NULL) == -EINVAL, "a NULL callback returns -EINVAL");
    check(endio_submit_write(d, b, sizeof b, 0, 1u << 7, count, NULL) == -EINVAL, "an unknown I/O flag returns -EINVAL");
    check(endio_submit_write(d, NULL, 4096, 0, 0, count, NULL) == -EINVAL, "a NULL buffer returns -EINVAL");
    check(endio_device_close(d) == 0, "close");
}

static void callbacks_and_blocking(struct endio_engine *e, const char *dir) {
    char path[4096];
    struct endio_device *d;
    snprintf(path, sizeof path, "%s/buffered", dir);
    if (endio_open(e, path, ENDIO_OPEN_READ | ENDIO_OPEN_WRITE | ENDIO_OPEN_CREATE, 0, &d) < 0) {
        check(0, "open a buffered file");
        return;
    }
    static char block[64 * 1024];
    struct counts c = {0};
    const int n = 256;
    for (int i = 0; i < n; i++) {
        memset(block, i, sizeof block);
        if (endio_submit_write(d, block, sizeof block, (uint64_t)i * sizeof block, 0, count, &c) < 0)
            break;
    }
    check(endio_device_drain(d) == 0, "drain");
    check(atomic_load(&c.calls) == n && atomic_load(&c.bad) == 0 && atomic_load(&c.bytes) == (long)n * (long)sizeof block,
          "each submitted write's callback ran exactly once, with its byte count");
    check(endio_fdatasync(d) == 0, "fdatasync");

    char back[64 * 1024];
    check(endio_pread(d, back, sizeof back, 7 * sizeof back) == (int64_t)sizeof back && back[0] == 7 &&
              back[sizeof back - 1] == 7,
          "a blocking read returns what was written");
    check(endio_pread(d, back, sizeof back, (uint64_t)n * sizeof back) == 0, "a read past the end returns 0");

    static char rbuf[64 * 1024];
    struct counts rc = {0};
    check(endio_submit_read(d, rbuf, sizeof rbuf, 3 * sizeof rbuf, 0, count, &rc) == 0, "submit a read");
    endio_device_drain(d);
    check(atomic_load(&rc.calls) == 1 && atomic_load(&rc.bytes) == (long)sizeof rbuf && rbuf[0] == 3,
          "a submitted read's callback ran once, after its data was copied in");

    struct nested nest = {.dev = d};
    check(endio_submit_write(d, block, 4096, 0, 0, blocking_in_callback, &nest) == 0, "submit a write");
    endio_device_drain(d);
    check(atomic_load(&nest.ran) && nest.read == 4096, "a callback may make blocking calls");
    check(nest.drain == -EDEADLK, "a callback may not drain its own device: -EDEADLK");
    check(endio_device_close(d) == 0, "close");
}

static void dontcache_leaves_the_cache_empty(struct endio_engine *e, const char *dir) {
    const uint64_t size = 64ull * MIB;
    char path[4096];
    struct endio_device *d;
    snprintf(path, sizeof path, "%s/dontcache", dir);
    if (endio_open(e, path, ENDIO_OPEN_READ | ENDIO_OPEN_WRITE | ENDIO_OPEN_CREATE | ENDIO_OPEN_DONTCACHE, 0, &d) < 0) {
        check(0, "open a dontcache file");
        return;
    }
    char *buf = malloc(MIB);
    memset(buf, 0x5a, MIB);
    struct counts c = {0};
    for (uint64_t off = 0; off < size; off += MIB)
        if (endio_submit_write(d, buf, MIB, off, 0, count, &c) < 0)
            break;
    check(endio_device_drain(d) == 0 && atomic_load(&c.calls) == 64 && atomic_load(&c.bad) == 0,
          "64 dontcache writes of 1 MiB, each callback once");
    struct endio_residency r;
    check(endio_residency(d, 0, size, &r) == 0, "residency");
    printf("page cache after 64 MiB of dontcache writes: %llu KiB\n", (unsigned long long)(r.cached_bytes >> 10));
    check(r.cached_bytes < size / 10, "a dontcache write leaves less than 10% of the file in the page cache");
    free(buf);
    check(endio_device_close(d) == 0, "close");
}

static void writeback_error_surfaces(struct endio_engine *e, const char *dev_path) {
    struct endio_device *d;
    if (endio_open(e, dev_path, ENDIO_OPEN_READ | ENDIO_OPEN_WRITE, 0, &d) < 0) {
        check(0, "open the failing device");
        return;
    }
    char *buf = malloc(MIB);
    memset(buf, 0x5a, MIB);
    int written = 0;
    /* 16 MiB, more than the device's free space: the tail's write-back
     * fails; the writes themselves only fill the page cache. */
    for (uint64_t off = 0; off < 16ull * MIB; off += MIB)
        written += endio_pwrite(d, buf, MIB, off) == MIB;
    check(written == 16, "buffered writes past the free space succeed into the page cache");
    int sync = endio_fdatasync(d);
    printf("fdatasync: %d (%s)\n", sync, sync < 0 ? endio_last_error_message() : "ok");
    check(sync < 0, "their write-back fails: the sync returns a negative errno");
    uint64_t count = 0;
    int first = 0;
    check(endio_writeback_errors(d, &count, &first) == 0, "endio_writeback_errors");
    printf("write-back errors: %llu, first errno %d (%s)\n", (unsigned long long)count, first, endio_strerror(first));
    check(count >= 1 && first != 0, "the failed write-back is counted, with its errno");
    free(buf);
    check(endio_device_close(d) == 0, "close");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--failing") == 0) {
        struct endio_engine *e = engine_or_die();
        writeback_error_surfaces(e, argv[2]);
        endio_engine_free(e);
    } else if (argc == 2) {
        struct endio_engine *e = engine_or_die();
        bad_arguments(e, argv[1]);
        callbacks_and_blocking(e, argv[1]);
        dontcache_leaves_the_cache_empty(e, argv[1]);
        struct endio_stats s;
        check(endio_stats(e, &s) == 0 && s.in_flight == 0, "stats: nothing in flight at the end");
        check(endio_engine_free(e) == 0, "free the engine");
    } else {
        fprintf(stderr, "usage: %s DIR | --failing DEVICE\n", argv[0]);
        return 2;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
