/*
 * bench/stats.c -- clocks, memory, summaries and file helpers.
 *
 * The per-span clock is the time-stamp counter (constant and non-stop on
 * the machines this runs on), calibrated against CLOCK_MONOTONIC once;
 * without an invariant TSC it falls back to CLOCK_MONOTONIC itself.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#include "bench.h"

static int use_tsc = 0;
static double ns_per_tick = 1.0;

/* CLOCK_MONOTONIC in seconds. */
double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CLOCK_MONOTONIC in nanoseconds. */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Pick the clock and calibrate the TSC over 100 ms. */
void bench_clock_init(void)
{
#ifdef HAVE_TSC
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int constant = 0, nonstop = 0;
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "flags", 5) == 0) {
                constant = strstr(line, " constant_tsc") != NULL;
                nonstop = strstr(line, " nonstop_tsc") != NULL;
                break;
            }
        }
        fclose(f);
    }
    if (constant && nonstop) {
        const uint64_t n0 = mono_ns(), t0 = __rdtsc();
        uint64_t n1, t1;
        do {
            n1 = mono_ns();
        } while (n1 - n0 < 100000000u);
        t1 = __rdtsc();
        ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
        use_tsc = 1;
    }
#endif
}

/* The per-span clock: the TSC (serialized by rdtscp) or monotonic ns. */
uint64_t bench_ticks(void)
{
#ifdef HAVE_TSC
    if (use_tsc) {
        unsigned aux;
        return __rdtscp(&aux);
    }
#endif
    return mono_ns();
}

/* Ticks to nanoseconds, with the calibration of bench_clock_init(). */
double bench_ticks_to_ns(uint64_t t)
{
    return use_tsc ? (double)t * ns_per_tick : (double)t;
}

/* Busy-wait `ns` nanoseconds. */
void bench_spin_ns(double ns)
{
    double end;
    if (ns <= 0) {
        return;
    }
    end = bench_now() + ns * 1e-9;
    while (bench_now() < end) {
    }
}

/* A size field ("VmRSS", "RssAnon") of /proc/self/status in KB, or -1. */
long bench_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    const size_t n = strlen(field);
    char line[256];
    long kb = -1;
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* qsort order of doubles. */
static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* The q-quantile (nearest rank) of `v`, sorted in place; NAN when empty. */
double bench_quantile(double *v, size_t n, double q)
{
    size_t i;
    if (n == 0) {
        return NAN;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    i = (size_t)ceil(q * (double)n);
    i = i == 0 ? 0 : i - 1;
    return v[i < n ? i : n - 1];
}

/* min, median and max of `n` values (NAN values are left out). */
bench_summary bench_summarize(const double *v, size_t n)
{
    bench_summary s = {NAN, NAN, NAN, 0};
    double tmp[BENCH_MAX_SAMPLES];
    size_t i;
    for (i = 0; i < n && s.n < BENCH_MAX_SAMPLES; i++) {
        if (!isnan(v[i])) {
            tmp[s.n++] = v[i];
        }
    }
    if (s.n == 0) {
        return s;
    }
    qsort(tmp, s.n, sizeof(double), cmp_double);
    s.min = tmp[0];
    s.max = tmp[s.n - 1];
    s.median = s.n % 2 ? tmp[s.n / 2] : (tmp[s.n / 2 - 1] + tmp[s.n / 2]) / 2;
    return s;
}

static uint64_t du_total;

/* nftw visitor adding each file's allocated bytes. */
static int du_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F) {
        du_total += (uint64_t)st->st_blocks * 512;
    }
    return 0;
}

/* Allocated bytes of the files under `path` (or of the file itself). */
uint64_t bench_du(const char *path)
{
    du_total = 0;
    if (nftw(path, du_visit, 16, FTW_PHYS) != 0) {
        return 0;
    }
    return du_total;
}

/* nftw visitor removing files, then their directories. */
static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -1;
}

/* Remove `path` and everything under it; a missing path is fine. */
int bench_rmrf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    return nftw(path, rm_visit, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir -p. */
int bench_mkdirs(const char *path)
{
    char tmp[4096];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            const char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            tmp[i] = c;
        }
    }
    return 0;
}

/* See bench.h. */
pid_t bench_child_fork(int fd[2])
{
    pid_t pid;
    if (pipe(fd) != 0) {
        return -1;
    }
    fflush(NULL);
    malloc_trim(0); /* hand freed memory back, so the child inherits less */
    pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    close(pid == 0 ? fd[0] : fd[1]);
    return pid;
}

/* See bench.h. */
int bench_child_collect(pid_t pid, int fd, void *res, size_t size, long *maxrss_kb, int *status)
{
    struct rusage ru;
    size_t got = 0;
    while (got < size) {
        const ssize_t n = read(fd, (char *)res + got, size - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (wait4(pid, status, 0, &ru) != pid) {
        return -1;
    }
    *maxrss_kb = ru.ru_maxrss;
    return got == size ? 0 : 1;
}

/* See bench.h. */
void *bench_array_grow(void *items, size_t *cap, size_t first, size_t width)
{
    const size_t want = *cap ? *cap * 2 : first;
    void *p = realloc(items, want * width);
    if (p != NULL) {
        *cap = want;
    }
    return p;
}
