/*
 * bench_util.h -- helpers the benchmarks share: the clock, pinning to a
 * cpu, percentiles of a sample, reading and writing exactly n bytes,
 * forking and reaping children, the request bytes of the CAPS benchmarks,
 * a process's resident memory, cpu time and context switches, a small
 * random number generator.
 * A program that includes it defines _GNU_SOURCE first (pin() uses the
 * CPU_SET macros).
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Nanoseconds on the monotonic clock. */
static inline double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e9 + ts.tv_nsec);
}

/* Marsaglia's xorshift32: the next of a sequence of 32-bit numbers from
 * the state *s (non-zero). */
static inline uint32_t
xorshift32(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return (*s = x);
}

/* Seconds on the monotonic clock. */
static inline double
now(void)
{
	return (now_ns() / 1e9);
}

/* Run the calling process on `cpu` only; a failure ends the process. */
static inline void
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("sched_setaffinity");
		_exit(1);
	}
}

static inline int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

struct result {
	double	p50, p99, p999, max, mean;
};

/* p50, p99, p99.9, the largest and the mean, in microseconds, of `n`
 * samples in seconds (sorts them). */
static inline struct result
summarize(double *s, long n)
{
	struct result r;
	double sum = 0;
	long i;

	for (i = 0; i < n; ++i)
		sum += s[i];
	qsort(s, n, sizeof(double), cmpd);
	r.p50 = s[n / 2] * 1e6;
	r.p99 = s[n * 99 / 100] * 1e6;
	r.p999 = s[n * 999 / 1000] * 1e6;
	r.max = s[n - 1] * 1e6;
	r.mean = sum / n * 1e6;
	return (r);
}

/* Read exactly `n` bytes: 0, or -1 at the end of input or on an error. */
static inline int
readn(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return (-1);
		got += r;
	}
	return (0);
}

/* Write exactly `n` bytes: 0, or -1 on an error. */
static inline int
writen(int fd, const void *buf, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t r = write(fd, (const char *)buf + put, n - put);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return (-1);
		put += r;
	}
	return (0);
}

/* fork() with stdio flushed first; a failure ends the program. */
static inline pid_t
xfork(void)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	return (pid);
}

/* Wait for a child; true if it exited with status 0. */
static inline int
reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return (0);
	return (WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The request for sequence number seq: seq, then bytes derived from it. */
static inline void
fill(unsigned char *p, size_t n, uint64_t seq)
{
	size_t i;

	memcpy(p, &seq, sizeof(seq));
	for (i = sizeof(seq); i < n; ++i)
		p[i] = (unsigned char)(seq * 31 + i);
}

/* What the CAPS benchmarks' servers do to a request. */
static inline void
complement(unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; ++i)
		p[i] = ~p[i];
}

static inline int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return (remove(path));
}

/* Remove the tree at `dir` (a benchmark's rendezvous directory). */
static inline void
rm_tree(const char *dir)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		perror(dir);
}

/* VmRSS of process `pid` in KB; -1 if unreadable. */
static inline long
rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return (kb);
}

/* utime + stime of process pid, in clock ticks; -1 if unreadable. */
static inline long long
cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the command name (in parentheses, may hold spaces). */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &ut, &st) != 2)
		return (-1);
	return ((long long)(ut + st));
}

/* The sum over every thread of process pid of what `one` reads from
 * its /proc/PID/task/TID/`file`; -1 if the threads cannot be listed. */
static inline long long
sum_tasks(pid_t pid, const char *file, long long (*one)(FILE *))
{
	char path[300];
	long long total = 0;
	struct dirent *d;
	DIR *dp;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((dp = opendir(path)) == NULL)
		return (-1);
	while ((d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", (int)pid,
		    d->d_name, file);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		total += one(f);
		fclose(f);
	}
	closedir(dp);
	return (total);
}

static inline long long
status_switches(FILE *f)
{
	char line[256];
	long long total = 0, v;

	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
		    sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
			total += v;
	return (total);
}

/* Context switches, voluntary and not, of every thread of process pid;
 * -1 if unreadable. */
static inline long long
ctx_switches(pid_t pid)
{
	return (sum_tasks(pid, "status", status_switches));
}

static inline long long
schedstat_ns(FILE *f)
{
	long long v;

	return (fscanf(f, "%lld", &v) == 1 ? v : 0);
}

/* Cpu time (ns) of every thread of process pid (schedstat's first
 * field: exact, not in clock ticks); -1 if unreadable. */
static inline long long
sched_ns(pid_t pid)
{
	return (sum_tasks(pid, "schedstat", schedstat_ns));
}

#endif
