/*
 * endio from C: writes a file with uncached ("dontcache") buffered I/O,
 * one callback per write running in task context, then reads it back with
 * blocking reads and shows how little of it the page cache kept.
 *
 *   cargo build --release -p endio-capi
 *   cc -I crates/endio-capi/include crates/endio-capi/examples/c/example.c \
 *      -L target/release -lendio -Wl,-rpath,"$PWD/target/release" -o example
 *   ./example /var/tmp/endio-example.dat 64
 *
 * Arguments: a path (created; not on tmpfs, whose files are all page
 * cache) and a size in MiB (default 64).
 */
#include <endio.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS (1u << 20)

static atomic_long done_bytes, failures;

/* Runs once per submitted write, on a completer worker (task context). */
static void on_write(void *user_data, int64_t result) {
    (void)user_data;
    if (result == BS)
        atomic_fetch_add(&done_bytes, result);
    else
        atomic_fetch_add(&failures, 1);
}

static int fail(const char *what, int64_t err) {
    fprintf(stderr, "%s: %s (%s)\n", what, endio_strerror((int)err), endio_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [MiB]\n", argv[0]);
        return 2;
    }
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 64;
    struct endio_engine *engine;
    struct endio_device *dev;
    int rc = endio_engine_new(NULL, &engine);
    if (rc < 0)
        return fail("endio_engine_new", rc);
    rc = endio_open(engine, argv[1], ENDIO_OPEN_READ | ENDIO_OPEN_WRITE | ENDIO_OPEN_CREATE | ENDIO_OPEN_DONTCACHE,
                    0, &dev);
    if (rc < 0)
        return fail("endio_open", rc);

    char *buf = malloc(BS);
    for (uint64_t i = 0; i < mib; i++) {
        memset(buf, (int)(i & 0xff), BS);
        /* The data is copied in: buf may be refilled at once. */
        rc = endio_submit_write(dev, buf, BS, i * BS, 0, on_write, NULL);
        if (rc < 0)
            return fail("endio_submit_write", rc);
    }
    if ((rc = endio_device_drain(dev)) < 0 || (rc = endio_fdatasync(dev)) < 0)
        return fail("drain and sync", rc);
    printf("wrote %ld MiB in %llu callbacks, %ld failed\n", atomic_load(&done_bytes) >> 20,
           (unsigned long long)mib, atomic_load(&failures));

    struct endio_residency r;
    if ((rc = endio_residency(dev, 0, 0, &r)) < 0)
        return fail("endio_residency", rc);
    printf("page cache after the dontcache writes: %llu KiB of %llu MiB\n",
           (unsigned long long)(r.cached_bytes >> 10), (unsigned long long)mib);

    for (uint64_t i = 0; i < mib; i++) {
        int64_t n = endio_pread(dev, buf, BS, i * BS);
        if (n != BS)
            return fail("endio_pread", n < 0 ? n : -5);
        if (buf[0] != (char)(i & 0xff) || buf[BS - 1] != (char)(i & 0xff)) {
            fprintf(stderr, "block %llu reads back wrong\n", (unsigned long long)i);
            return 1;
        }
    }
    struct endio_stats s;
    endio_stats(engine, &s);
    printf("read back and checked %llu MiB; completer: %llu deferred, %llu inline, %llu batches\n",
           (unsigned long long)mib, (unsigned long long)s.deferred, (unsigned long long)s.inlined,
           (unsigned long long)s.batches);

    /* A bad argument: the errno, and a message that names the fix. */
    struct endio_device *missing;
    rc = endio_open(engine, "/nonexistent/endio", ENDIO_OPEN_READ, 0, &missing);
    printf("open of a missing file: %d (%s): %s\n", rc, endio_strerror(rc), endio_last_error_message());

    free(buf);
    return endio_device_close(dev) < 0 || endio_engine_free(engine) < 0;
}
