/*
 * bench/ls_big.c -- `deja ls` on a store of 1,000,000 small traces.
 *
 * The store is recorded with the tracer in a child process (one recording
 * thread, default options: this is also an ingest measurement, and the
 * child's peak RSS is the recording process's), then kept in the build
 * directory keyed by its size, the workload version, the store's format
 * and deja's version: a rerun says "cached" and skips the build.
 * `deja ls --limit 20` and `deja ls --tag user=u123 --limit 20` then run as
 * subprocesses, cold (the store's pages dropped from the page cache with
 * posix_fadvise before each run) and warm: wall time from fork to exit,
 * and their peak RSS from wait4().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define BIG_POOL 4096

typedef struct build_result {
    int ok;
    long rss_start_kb;
    double wall;
    uint64_t written;
    uint64_t lost;
    char msg[200];
} build_result;

/* The child: record `n` small traces into a store under `dir`. */
static void build_child(const char *dir, size_t n, build_result *res)
{
    bench_workload w;
    bench_thread t;
    bench_sink *s = NULL;
    const bench_sink_ops *ops = &bench_sink_deja;
    double t0;
    size_t i;
    res->rss_start_kb = bench_status_kb("VmRSS");
    if (bench_workload_small(&w, BIG_POOL, 0x5eed0001) != 0) {
        snprintf(res->msg, sizeof(res->msg), "out of memory");
        return;
    }
    if (bench_thread_init(&t, &w, 99) != 0 || ops->open(&s, dir, &w) != 0) {
        snprintf(res->msg, sizeof(res->msg), "cannot open the tracer: %s", deja_error_last());
        bench_workload_free(&w);
        return;
    }
    t0 = bench_now();
    for (i = 0; i < n; i++) {
        bench_record r;
        t.pool_index = i % BIG_POOL;
        bench_record_stamp(&r, &w.recs[t.pool_index], t.stamp, i);
        if (ops->record(s, &t, &r) != 0) {
            snprintf(res->msg, sizeof(res->msg), "recording failed at %zu: %s", i,
                     deja_error_last());
            break;
        }
    }
    if (i == n && ops->finish(s) == 0) {
        res->ok = 1;
    }
    res->wall = bench_now() - t0;
    res->written = ops->committed(s);
    res->lost = ops->lost(s);
    ops->close(s);
    bench_thread_free(&t);
    bench_workload_free(&w);
}

/* Build the store in a child; returns 0 when every trace was written. */
static int build_store(const char *dir, size_t n, build_result *res, long *maxrss_kb)
{
    int fd[2], status = 0, got;
    pid_t pid;
    memset(res, 0, sizeof(*res));
    pid = bench_child_fork(fd);
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        build_result r;
        memset(&r, 0, sizeof(r));
        build_child(dir, n, &r);
        _exit(write(fd[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 3);
    }
    got = bench_child_collect(pid, fd[0], res, sizeof(*res), maxrss_kb, &status);
    if (got < 0) {
        return -1;
    }
    if (got > 0) {
        snprintf(res->msg, sizeof(res->msg), "child died (status %d)", status);
        return -1;
    }
    return res->ok && res->written == n && res->lost == 0 ? 0 : -1;
}

/* The number of traces in the store at `path`, or -1 when unreadable. */
static long long store_traces(const char *path)
{
    deja_store *st = NULL;
    deja_store_stats s;
    long long n = -1;
    if (deja_store_open(&st, path, DEJA_STORE_READONLY) != 0) {
        return -1;
    }
    if (deja_store_stats_get(st, &s) == 0) {
        n = (long long)s.traces;
    }
    deja_store_close(st);
    return n;
}

typedef bench_exec_run ls_run;

/* The helper mode (deja-bench --measure-exec CMD...), run as a fresh
 * process so that the measured command inherits a small image: a child
 * forked from the bench itself would carry the bench's RSS into its
 * ru_maxrss, and its fork would cost page-table copies. Runs CMD with
 * stdout counted (lines) and stderr inherited, and prints one line
 * "<exit code> <wall ms> <maxrss kb> <lines>". Returns 0, or 2 if CMD
 * could not be run. */
int bench_measure_exec_main(char **argv)
{
    int fd[2], status = 0;
    struct rusage ru;
    char buf[65536];
    size_t lines = 0;
    double t0;
    pid_t pid;
    ssize_t k;
    if (argv[0] == NULL || pipe(fd) != 0) {
        return 2;
    }
    t0 = bench_now();
    pid = fork();
    if (pid < 0) {
        return 2;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    while ((k = read(fd[0], buf, sizeof(buf))) > 0) {
        ssize_t i;
        for (i = 0; i < k; i++) {
            lines += buf[i] == '\n';
        }
    }
    close(fd[0]);
    if (wait4(pid, &status, 0, &ru) != pid) {
        return 2;
    }
    printf("%d %.4f %ld %zu %.4f\n",
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
           (bench_now() - t0) * 1e3, ru.ru_maxrss, lines,
           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
    return 0;
}

/* Run `argv` through the helper mode of this very program, stderr to
 * `errfile`, and fill `out`. */
void bench_exec_measured(char *const argv[], const char *errfile, ls_run *out)
{
    char self[4096], line[256];
    char *hargv[16];
    int fd[2], status = 0, code = -1;
    size_t i, got = 0;
    ssize_t k, n;
    pid_t pid;
    memset(out, 0, sizeof(out[0]));
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || pipe(fd) != 0) {
        snprintf(out->err, sizeof(out->err), "cannot find /proc/self/exe");
        return;
    }
    self[n] = '\0';
    hargv[0] = self;
    hargv[1] = "--measure-exec";
    for (i = 0; argv[i] != NULL && i + 3 < sizeof(hargv) / sizeof(hargv[0]); i++) {
        hargv[i + 2] = argv[i];
    }
    hargv[i + 2] = NULL;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        snprintf(out->err, sizeof(out->err), "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        const int e = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd[1], 1);
        if (e >= 0) {
            dup2(e, 2);
        }
        close(fd[0]);
        execv(self, hargv);
        _exit(127);
    }
    close(fd[1]);
    while (got + 1 < sizeof(line) && (k = read(fd[0], line + got, sizeof(line) - 1 - got)) > 0) {
        got += (size_t)k;
    }
    line[got] = '\0';
    close(fd[0]);
    waitpid(pid, &status, 0);
    if (sscanf(line, "%d %lf %ld %zu %lf", &code, &out->ms, &out->rss_kb, &out->lines,
               &out->cpu_ms) < 4) {
        snprintf(out->err, sizeof(out->err), "the measuring helper failed (status %d)", status);
        return;
    }
    out->code = code;
    if (code == 0) {
        out->ok = 1;
    } else {
        FILE *f = fopen(errfile, "r");
        char msg[180] = "";
        if (f != NULL) {
            if (fgets(msg, sizeof(msg), f) == NULL) {
                msg[0] = '\0';
            }
            fclose(f);
        }
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(out->err, sizeof(out->err), "exit %d: %s", code, msg);
    }
}

/* Drop the page cache of every file in the store directory `store`
 * (posix_fadvise DONTNEED: the store is synced, so its pages are clean
 * and go). Returns 0, or -1 when a file could not be opened. */
static int drop_cache(const char *store)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char path[4400];
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", store, files[i]);
        const int fd = open(path, O_RDONLY);
        if (fd < 0) {
            rc = -1;
            continue;
        }
        fdatasync(fd);
        if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
            rc = -1;
        }
        close(fd);
    }
    return rc;
}

/* Time one ls query: cold (the store's pages dropped before each run) and
 * warm (a warm-up, then `runs` timed runs). */
static void time_ls(bench_report *rep, const bench_config *c, const char *store,
                    const char *id, const char *tag, double target_ms, const char *ttext)
{
    bench_figure *ft = bench_report_add(rep, id, "small", 0, "ms", 0);
    char rss_id[64], cold_id[64];
    bench_figure *fm, *fc;
    char errfile[4096];
    char *argv[16] = {0};
    size_t i, argc = 0;
    snprintf(rss_id, sizeof(rss_id), "%s_rss", id);
    snprintf(cold_id, sizeof(cold_id), "%s_cold", id);
    fm = bench_report_add(rep, rss_id, "small", 0, "MB", 0);
    fc = bench_report_add(rep, cold_id, "small", 0, "ms", 0);
    if (ft == NULL || fm == NULL || fc == NULL) {
        return;
    }
    snprintf(errfile, sizeof(errfile), "%s/ls.stderr", c->workdir);
    argv[argc++] = (char *)c->deja_bin;
    argv[argc++] = "--store";
    argv[argc++] = (char *)store;
    argv[argc++] = "ls";
    if (tag != NULL) {
        argv[argc++] = "--tag";
        argv[argc++] = (char *)tag;
    }
    argv[argc++] = "--limit";
    argv[argc++] = "20";
    argv[argc] = NULL;
    snprintf(ft->spread, sizeof(ft->spread), "%zu runs, warm page cache", c->ls_runs);
    snprintf(fc->spread, sizeof(fc->spread), "%zu runs, store pages dropped", c->ls_runs);
    snprintf(fm->note, sizeof(fm->note), "ru_maxrss of the deja process (started from a small "
                                         "helper, so nothing of the bench is inherited)");
    snprintf(fm->spread, sizeof(fm->spread), "%zu runs", c->ls_runs);
    snprintf(ft->note, sizeof(ft->note), "deja ls%s%s --limit 20 over %zu traces, fork to exit",
             tag ? " --tag " : "", tag ? tag : "", c->big_n);
    snprintf(fc->note, sizeof(fc->note),
             "the same, the store's file pages dropped (posix_fadvise DONTNEED) before each run");
    if (c->big_n >= 1000000) {
        bench_figure_target(ft, 1, SYS_DEJA, target_ms, ttext);
        bench_figure_target(fm, 1, SYS_DEJA, 64, "<= 64 MB");
    }
    for (i = 0; i < c->ls_runs; i++) {
        ls_run lr;
        if (drop_cache(store) != 0) {
            bench_report_note(rep, "%s: cannot drop the store's pages", cold_id);
            break;
        }
        bench_exec_measured(argv, errfile, &lr);
        if (!lr.ok) {
            bench_report_note(rep, "%s: %s", cold_id, lr.err);
            break;
        }
        fc->v[SYS_DEJA][fc->n[SYS_DEJA]++] = lr.ms;
    }
    for (i = 0; i <= c->ls_runs; i++) {
        ls_run lr;
        bench_exec_measured(argv, errfile, &lr);
        if (!lr.ok) {
            bench_report_note(rep, "%s: %s", id, lr.err);
            return;
        }
        if (i == 0) {
            if (lr.lines < 20) {
                bench_report_note(rep, "%s: printed %zu lines, expected at least 20", id,
                                  lr.lines);
            }
            continue;
        }
        ft->v[SYS_DEJA][ft->n[SYS_DEJA]++] = lr.ms;
        fm->v[SYS_DEJA][fm->n[SYS_DEJA]++] = (double)lr.rss_kb / 1024.0;
    }
}

/* The on-disk format version this build writes, from a store created for
 * the purpose under `workdir`; 0 when it cannot be had. */
static unsigned store_format(const char *workdir)
{
    char path[4200];
    deja_store *st = NULL;
    deja_store_stats s;
    unsigned f = 0;
    snprintf(path, sizeof(path), "%s/format-probe.store", workdir);
    bench_rmrf(path);
    if (deja_store_open(&st, path, DEJA_STORE_WRITE) == 0 && deja_store_stats_get(st, &s) == 0) {
        f = s.format;
    }
    deja_store_close(st);
    bench_rmrf(path);
    return f;
}

/* See bench.h. Keyed on the store's format and the workload: a change of
 * either builds a new store (and DEJA_VERSION_STRING, for changes within
 * a format that the figures would show). */
void bench_big_store_dir(const bench_config *c, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/ls-%zu-w%d-f%u-v%s", c->cachedir, c->big_n, BENCH_WORKLOAD_VERSION,
             store_format(c->workdir), DEJA_VERSION_STRING);
}

/* See bench.h. */
int bench_ls_big(bench_report *rep, const bench_config *c)
{
    char dir[4096], store[4200], marker[4200];
    struct stat st;
    int cached = 0;
    bench_big_store_dir(c, dir, sizeof dir);
    snprintf(store, sizeof(store), "%s/deja.store", dir);
    snprintf(marker, sizeof(marker), "%s/complete", dir);
    if (bench_mkdirs(c->cachedir) != 0) {
        bench_report_note(rep, "ls: cannot create %s", c->cachedir);
        return -1;
    }
    if (!c->rebuild && stat(marker, &st) == 0 && store_traces(store) == (long long)c->big_n) {
        cached = 1;
    }
    if (!cached) {
        bench_figure *fi = bench_report_add(rep, "big_store_ingest", "small", 1, "traces/s", 1);
        bench_figure *fr = bench_report_add(rep, "big_store_recording_rss", "small", 1, "MB", 0);
        build_result res;
        long maxrss = 0;
        FILE *m;
        fprintf(stderr, "deja-bench: building the %zu-trace store for ls (cached afterwards)\n",
                c->big_n);
        unlink(marker);
        if (bench_rmrf(dir) != 0 || bench_mkdirs(dir) != 0 ||
            build_store(dir, c->big_n, &res, &maxrss) != 0) {
            bench_report_note(rep, "ls: building the %zu-trace store failed: %s (%llu written)",
                              c->big_n, res.msg, (unsigned long long)res.written);
            return -1;
        }
        if (fi != NULL && fr != NULL) {
            snprintf(fi->spread, sizeof(fi->spread), "1 run");
            snprintf(fi->note, sizeof(fi->note),
                     "%zu small traces, 1 recording thread, default tracer options",
                     c->big_n);
            fi->v[SYS_DEJA][fi->n[SYS_DEJA]++] = (double)res.written / res.wall;
            snprintf(fr->spread, sizeof(fr->spread), "1 run");
            snprintf(fr->note, sizeof(fr->note),
                     "peak RSS of the recording child minus the image it inherited");
            fr->v[SYS_DEJA][fr->n[SYS_DEJA]++] = (double)(maxrss - res.rss_start_kb) / 1024.0;
        }
        m = fopen(marker, "w");
        if (m != NULL) {
            fprintf(m, "%zu\n", c->big_n);
            fclose(m);
        }
    } else {
        bench_report_note(rep, "ls: the %zu-trace store is cached (%s); --rebuild rebuilds it",
                          c->big_n, store);
    }
    {
        bench_figure *fb = bench_report_add(rep, "big_store_bytes_per_trace", "small", 0,
                                            "bytes", 0);
        if (fb != NULL) {
            snprintf(fb->spread, sizeof(fb->spread), cached ? "cached store" : "1 run");
            fb->v[SYS_DEJA][fb->n[SYS_DEJA]++] = (double)bench_du(store) / (double)c->big_n;
            snprintf(fb->note, sizeof(fb->note), "du of the store directory");
        }
    }
    time_ls(rep, c, store, "ls_newest20", NULL, 20, "<= 20 ms");
    time_ls(rep, c, store, "ls_tag", "user=u123", 50, "<= 50 ms");
    return 0;
}
