/*
 * The kernel's own I/O on one file or block device, one synchronous
 * pwritev2/preadv2 at a time (queue depth 1): the reference endio is
 * compared with. Modes: buffered, dontcache (RWF_DONTCACHE on every call)
 * and direct (O_DIRECT).
 *
 *   dcloop PATH write|read|randwrite|randread BS SIZE buffered|dontcache|direct [SEED]
 *
 * Before a job the range is written back and dropped from the page cache;
 * a job that wrote ends with fsync inside its time. Prints one JSON line:
 * throughput, latency percentiles, CPU time, page-cache residency (cachestat:
 * max over the job, and at its end), I/O errors and the first errno.
 * Exit status 1 when any call failed (a short transfer counts as failed),
 * 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>

#ifndef RWF_DONTCACHE
#define RWF_DONTCACHE 0x00000080
#endif
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

struct cachestat_range { uint64_t off, len; };
struct cachestat { uint64_t cache, dirty, writeback, evicted, recently_evicted; };

static uint64_t resident(int fd, uint64_t size)
{
	struct cachestat_range r = { 0, size };
	struct cachestat cs;
	if (syscall(__NR_cachestat, fd, &r, &cs, 0) != 0)
		return UINT64_MAX;
	return cs.cache * (uint64_t)sysconf(_SC_PAGESIZE);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': return v << 10;
	case 'm': case 'M': return v << 20;
	case 'g': case 'G': return v << 30;
	default: return v;
	}
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: dcloop PATH write|read|randwrite|randread BS SIZE buffered|dontcache|direct [SEED]\n");
		return 2;
	}
	const char *path = argv[1], *rw = argv[2], *mode = argv[5];
	uint64_t bs = parse_size(argv[3]), size = parse_size(argv[4]);
	uint64_t seed = argc > 6 ? strtoull(argv[6], NULL, 0) : 0x5eed;
	int write = strstr(rw, "write") != NULL, rnd = strncmp(rw, "rand", 4) == 0;
	int direct = strcmp(mode, "direct") == 0, dc = strcmp(mode, "dontcache") == 0;
	if (bs == 0 || size < bs || (!direct && !dc && strcmp(mode, "buffered") != 0)) {
		fprintf(stderr, "dcloop: bad block size, size or mode\n");
		return 2;
	}
	int fd = open(path, O_RDWR | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "dcloop: open %s: %s\n", path, strerror(errno));
		return 2;
	}
	fdatasync(fd);
	posix_fadvise(fd, 0, (off_t)size, POSIX_FADV_DONTNEED);

	uint64_t n = size / bs;
	void *buf;
	if (posix_memalign(&buf, 4096, bs) != 0)
		return 2;
	for (uint64_t i = 0; i < bs; i++)
		((unsigned char *)buf)[i] = (unsigned char)(i * 131 + seed);
	double *lat = calloc(n, sizeof(double));
	if (!lat)
		return 2;
	struct iovec iov = { buf, bs };
	int flags = dc ? RWF_DONTCACHE : 0;
	uint64_t x = seed | 1, errors = 0, done = 0, cache_max = 0;
	int first_errno = 0;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double t0 = now();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t blk = i;
		if (rnd) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			blk = x % n;
		}
		off_t off = (off_t)(blk * bs);
		double s = now();
		ssize_t r = write ? pwritev2(fd, &iov, 1, off, flags) : preadv2(fd, &iov, 1, off, flags);
		lat[i] = (now() - s) * 1e6;
		if (r != (ssize_t)bs) {
			errors++;
			if (!first_errno)
				first_errno = r < 0 ? errno : EIO;
		} else {
			done += bs;
		}
		if ((i & 15) == 0) {
			uint64_t c = resident(fd, size);
			if (c != UINT64_MAX && c > cache_max)
				cache_max = c;
		}
	}
	double fsync_s = 0;
	if (write) {
		double s = now();
		if (fsync(fd) != 0) {
			errors++;
			if (!first_errno)
				first_errno = errno;
		}
		fsync_s = now() - s;
	}
	double secs = now() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	uint64_t cache_end = resident(fd, size);
	if (cache_end != UINT64_MAX && cache_end > cache_max)
		cache_max = cache_end;
	qsort(lat, n, sizeof(double), cmp);
	double us = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
	double ss = (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	printf("{\"tool\":\"pwritev2\",\"mode\":\"%s\",\"rw\":\"%s\",\"bs\":%llu,\"bytes\":%llu,"
	       "\"seconds\":%.6f,\"mib_per_s\":%.3f,\"end_fsync_s\":%.6f,"
	       "\"lat_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},"
	       "\"cpu\":{\"user_s\":%.4f,\"sys_s\":%.4f},"
	       "\"cache\":{\"resident_max_bytes\":%llu,\"resident_end_bytes\":%llu},"
	       "\"errors\":%llu,\"error\":%d}\n",
	       mode, rw, (unsigned long long)bs, (unsigned long long)done, secs,
	       done / 1048576.0 / secs, fsync_s, pct(lat, n, 0.5), pct(lat, n, 0.99),
	       pct(lat, n, 0.999), us, ss, (unsigned long long)cache_max,
	       (unsigned long long)(cache_end == UINT64_MAX ? 0 : cache_end),
	       (unsigned long long)errors, first_errno);
	return errors ? 1 : 0;
}
