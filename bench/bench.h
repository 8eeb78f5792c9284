/*
 * bench/bench.h -- deja's benchmark and its baselines (./run bench).
 *
 * One program, deja-bench, runs every workload against deja and, in the
 * same run on the same records, against what a user would otherwise reach
 * for: JSON lines streamed through zstd into one file, a SQLite table in
 * WAL mode holding one JSON row per trace, and the raw limit (LMDB batched
 * puts of already-serialized values, no compression). It prints one table
 * and writes the same figures as JSON.
 *
 * Files: workloads.c (deterministic records), serialize.c (JSON and raw
 * forms of a record), sink_deja.c and baselines.c (the four systems behind
 * one interface), measure.c (hot path, ingest, bytes and read passes),
 * ls_big.c (the 1,000,000-trace store and `deja ls`), stats.c (timers and
 * summaries), report.c (table and JSON), main.c (options and order).
 */
#ifndef DEJA_BENCH_H
#define DEJA_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "deja.h"

/* Bumped whenever the generated records change, so that cached stores
 * built by an older bench are rebuilt. */
#define BENCH_WORKLOAD_VERSION 1

/* ------------------------------------------------------------------------
 * Records: one logical inference, as every system receives it.
 * ---------------------------------------------------------------------- */

#define BENCH_MAX_TENSORS 4
#define BENCH_MAX_PARAMS 4
#define BENCH_MAX_TAGS 3

typedef struct bench_tensor {
    const char *name;
    deja_dtype dtype;
    uint64_t shape[1];
    const void *data;
    size_t size;
} bench_tensor;

typedef struct bench_param {
    const char *key;
    deja_param_kind kind;
    double num;
    const char *str;
} bench_param;

typedef struct bench_record {
    const char *model;
    const char *version;
    uint8_t digest[16];
    bench_tensor in[BENCH_MAX_TENSORS];
    size_t nin;
    bench_tensor out[BENCH_MAX_TENSORS];
    size_t nout;
    bench_param params[BENCH_MAX_PARAMS];
    size_t nparams;
    uint64_t seed;
    deja_tag tags[BENCH_MAX_TAGS];
    size_t ntags;
    /* The tensor stamped with a sequence number so that every recorded
     * trace is distinct even when the pool is cycled: side and index. */
    deja_side stamp_side;
    size_t stamp_index;
    int stamp_tail; /* stamp the last 16 bytes rather than the first */
} bench_record;

/* A workload: a pool of records, all generated deterministically. */
typedef struct bench_workload {
    const char *name;  /* "small", "chat", "tensor" */
    bench_record *recs;
    size_t nrecs;
    size_t raw_bytes;  /* sum over the pool of tensor payload bytes */
    void *arena;       /* owns every payload */
    size_t stamp_max;  /* largest stamped tensor, for per-thread copies */
} bench_workload;

/* Scale of the generated sets. */
typedef struct bench_scale {
    size_t small_n;       /* distinct small records */
    size_t chat_sessions; /* sessions of 10 turns */
    size_t chat_live;     /* sessions in flight at once (interleaved turns) */
    size_t tensor_n;      /* tensor records */
    size_t tensor_images; /* distinct 64 KB inputs among them */
} bench_scale;

int bench_workload_small(bench_workload *out, size_t n, uint64_t seed);
int bench_workload_chat(bench_workload *out, size_t sessions, size_t live, uint64_t seed);
int bench_workload_tensor(bench_workload *out, size_t n, size_t images, uint64_t seed);
void bench_workload_free(bench_workload *w);

/* A record with its stamped tensor replaced by a copy in `scratch` (of at
 * least w->stamp_max bytes) carrying `seq`. `out` is a shallow copy. */
void bench_record_stamp(bench_record *out, const bench_record *in, uint8_t *scratch,
                        uint64_t seq);

/* ------------------------------------------------------------------------
 * Serialization for the baselines.
 * ---------------------------------------------------------------------- */

typedef struct bench_buf {
    char *data;
    size_t size;
    size_t cap;
} bench_buf;

int bench_buf_reserve(bench_buf *b, size_t extra);
void bench_buf_free(bench_buf *b);

/* A bench-local trace id in ULID layout (ms then 80 bits), printed as 26
 * Crockford base32 characters into `out` (27 bytes). */
void bench_id_new(uint8_t id[16], uint64_t thread_salt, uint64_t *counter);
void bench_id_format(const uint8_t id[16], char out[27]);

/* Serialize `r` as one JSON object (no newline) into `b` (replacing its
 * content). Text tensors are JSON strings, others base64. */
int bench_json_record(bench_buf *b, const bench_record *r, const char *id, int64_t start_ns,
                      int64_t duration_ns);

/* Serialize `r` as an already-serialized value for the raw limit: a JSON
 * header without payloads, then every payload byte as is. */
int bench_raw_record(bench_buf *b, const bench_record *r, const char *id);

/* Parse one JSON trace (as written above) the way a replayer would: every
 * field, base64 payloads decoded. Returns 0 or -1. */
int bench_json_decode(const char *text, size_t len, bench_buf *scratch);

/* ------------------------------------------------------------------------
 * The systems: deja and the three baselines behind one interface.
 * ---------------------------------------------------------------------- */

enum { SYS_DEJA = 0, SYS_JSONL = 1, SYS_SQLITE = 2, SYS_LMDB = 3, SYS_COUNT = 4 };

typedef struct bench_sink bench_sink;

/* Per-thread scratch: serialization buffers and the stamp copy. */
typedef struct bench_thread {
    bench_buf json;
    bench_buf aux;
    uint8_t *stamp;
    uint64_t salt;
    uint64_t counter;
    size_t pool_index; /* index in the pool of the record being recorded */
    deja_id last_id;   /* deja: id of the last span recorded */
    void *txn;         /* raw limit: this thread's open write transaction */
    unsigned batch;    /* raw limit: puts in it */
} bench_thread;

int bench_thread_init(bench_thread *t, const bench_workload *w, uint64_t salt);
void bench_thread_free(bench_thread *t);

typedef struct bench_sink_ops {
    const char *name;
    /* Open the system's files under `dir` (created, must not exist). `w` is
     * the workload, so that the raw limit can pre-serialize its values. */
    int (*open)(bench_sink **out, const char *dir, const bench_workload *w);
    /* Record one trace from any thread. */
    int (*record)(bench_sink *s, bench_thread *t, const bench_record *r);
    /* Called by each recording thread when it stops (may be NULL). */
    int (*thread_end)(bench_sink *s, bench_thread *t);
    /* Make everything recorded so far durable. */
    int (*finish)(bench_sink *s);
    /* Traces committed so far (callable from another thread while
     * recording), and traces lost (dropped or failed). */
    uint64_t (*committed)(bench_sink *s);
    uint64_t (*lost)(bench_sink *s);
    void (*close)(bench_sink *s);
    /* Bytes on disk of what the system wrote under `dir` (after close). */
    uint64_t (*disk_bytes)(const char *dir);
    /* Open for reading what was written under `dir` and read back every
     * trace (select, decompress, decode) on this thread, `ids` being the
     * ids deja recorded, in order. The timed part (not the opening, nor
     * listing the keys) goes to `*seconds`. Returns traces read, or -1. */
    int64_t (*read_all)(const char *dir, const deja_id *ids, size_t nids, double *seconds);
} bench_sink_ops;

extern const bench_sink_ops bench_sink_deja;
extern const bench_sink_ops bench_sink_jsonl;
extern const bench_sink_ops bench_sink_sqlite;
extern const bench_sink_ops bench_sink_lmdb;

/* The four, indexed by SYS_*. */
const bench_sink_ops *bench_sink_get(int sys);

/* ------------------------------------------------------------------------
 * Time, memory and summaries.
 * ---------------------------------------------------------------------- */

void bench_clock_init(void);
uint64_t bench_ticks(void);           /* cheap cycle counter (rdtsc) or ns */
double bench_ticks_to_ns(uint64_t t); /* calibrated */
double bench_now(void);               /* CLOCK_MONOTONIC seconds */
long bench_status_kb(const char *field); /* "VmRSS", "RssAnon" of /proc/self/status */
void bench_spin_ns(double ns);        /* busy-wait, standing in for model work */

/* Median and min/max etc. of a sample; sorts `v` in place. */
double bench_quantile(double *v, size_t n, double q);

typedef struct bench_summary {
    double min, median, max;
    size_t n;
} bench_summary;

bench_summary bench_summarize(const double *v, size_t n);

/* Grow `items`, an array of *cap items of `width` bytes each, to twice as
 * many (`first` when *cap is 0) and update *cap. Returns the new array, or
 * NULL when out of memory: then `items` and *cap are unchanged and the
 * array is still the caller's to free. */
void *bench_array_grow(void *items, size_t *cap, size_t first, size_t width);

/* File sizes as du(1) counts them (allocated blocks), recursively. */
uint64_t bench_du(const char *path);
int bench_rmrf(const char *path);
int bench_mkdirs(const char *path);

/* A child that hands one fixed-size result back through a pipe.
 * bench_child_fork() flushes stdio and trims the heap (so the child inherits
 * no pending output and less memory), opens a pipe and forks: the child gets
 * 0 with only fd[1], the write end, open; the parent gets the child's pid
 * with only fd[0] open; -1 (nothing left open) when pipe() or fork() fails.
 * bench_child_collect() reads up to `size` bytes of the result from `fd`
 * into `res`, closes `fd` and reaps `pid` with wait4(), storing the child's
 * peak RSS in *maxrss_kb and its wait status in *status. It returns 0 when
 * the whole result arrived, 1 when less did (the child died), -1 when
 * wait4() fails (then *maxrss_kb is left alone). */
pid_t bench_child_fork(int fd[2]);
int bench_child_collect(pid_t pid, int fd, void *res, size_t size, long *maxrss_kb, int *status);

/* ------------------------------------------------------------------------
 * Figures and the report.
 * ---------------------------------------------------------------------- */

#define BENCH_MAX_SAMPLES 64

/* One measured quantity for each system (NAN when not measured), each a
 * set of repeats; ratios deja/baseline pair repeats by index. */
typedef struct bench_figure {
    char id[64];       /* "hot_path_median", "ingest", ... */
    char workload[16]; /* "small", ... */
    int threads;       /* 0 when not applicable */
    char unit[16];     /* "ns", "traces/s", "bytes", "ms", "MB" */
    int higher_better;
    char spread[48];   /* what the repeats are: "5 repeats", "1-s windows" */
    double v[SYS_COUNT][BENCH_MAX_SAMPLES];
    size_t n[SYS_COUNT];
    double overall[SYS_COUNT]; /* single headline value (NAN = use median) */
    char note[160];
    /* Targets: up to two, each either absolute on deja or a ratio bound. */
    struct {
        int kind; /* 0 none, 1 deja <= x, 2 deja >= x, 3 ratio vs sys <= x, 4 ratio >= x */
        int sys;
        double x;
        char text[48];
    } target[2];
} bench_figure;

typedef struct bench_report {
    bench_figure **figs; /* each allocated on its own: pointers stay valid */
    size_t nfigs;
    size_t cap;
    int quick;
    double started;
    char notes[64][200];
    size_t nnotes;
} bench_report;

bench_figure *bench_report_add(bench_report *r, const char *id, const char *workload,
                               int threads, const char *unit, int higher_better);
void bench_figure_target(bench_figure *f, int kind, int sys, double x, const char *text);
void bench_report_note(bench_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_report_print(const bench_report *r);
int bench_report_write_json(const bench_report *r, const char *path);
void bench_report_free(bench_report *r);

/* The headline value of a figure for one system: `overall` when set,
 * else the median of the repeats; NAN when none. */
double bench_figure_value(const bench_figure *f, int sys);

/* ------------------------------------------------------------------------
 * Measurements (measure.c, ls_big.c).
 * ---------------------------------------------------------------------- */

typedef struct bench_config {
    int quick;
    const char *workdir;   /* scratch stores, removed at the end */
    const char *cachedir;  /* the big store, kept across runs */
    const char *deja_bin;  /* the deja command */
    double ingest_seconds; /* per ingest configuration of small */
    double ingest_seconds_big; /* per configuration of chat and tensor */
    size_t hot_spans;      /* hot-path sample size per system, small */
    double model_ns;       /* simulated model time between spans */
    size_t read_repeats;
    size_t big_n;          /* traces in the ls store */
    size_t ls_runs;
    int rebuild;
    int keep;              /* --keep: leave the scratch stores for inspection */
    unsigned systems;      /* bit mask of SYS_* to run */
} bench_config;

int bench_hot_path(bench_report *rep, const bench_config *c, const bench_workload *w,
                   size_t spans);
int bench_ingest(bench_report *rep, const bench_config *c, const bench_workload *w,
                 int threads);

/* Ingest of `w` on 2 threads into a store full at a disk budget (eviction
 * in the loop) against the same without a budget, a few runs each. */
int bench_budget(bench_report *rep, const bench_config *c, const bench_workload *w);
int bench_bytes_and_read(bench_report *rep, const bench_config *c, const bench_workload *w);
/* A 1 GB burst of 8 MB tensors through the tracer with default options
 * (256 MB with --quick): peak heap above the baseline (burst.c). */
int bench_burst(bench_report *rep, const bench_config *c);
int bench_ls_big(bench_report *rep, const bench_config *c);
/* The directory of the big store of ls_big.c (its deja.store inside),
 * keyed on its size, the workload, the store format and deja's version:
 * the ls pass builds it, the watch pass reads it. */
void bench_big_store_dir(const bench_config *c, char *dir, size_t cap);
/* `deja stats --by version` and `deja drift` over the ls store, and the
 * recording cost of 5 rules (watch_big.c). */
int bench_watch_big(bench_report *rep, const bench_config *c);

/* One run of a command through the measuring helper (ls_big.c): exit
 * code, wall time from fork to exit, peak RSS, lines on stdout; `ok` when
 * the code is 0, else `err` says why (the first line of its stderr). */
typedef struct bench_exec_run {
    int ok;
    int code;
    double ms;
    double cpu_ms; /* user + system time of the command */
    long rss_kb;
    size_t lines;
    char err[200];
} bench_exec_run;

/* Run `argv` (argv[0] a path) through deja-bench --measure-exec, stderr
 * to `errfile`. */
void bench_exec_measured(char *const argv[], const char *errfile, bench_exec_run *out);

/* The fleet pass (fleet.c): ship to a JetStream node started for it, against
 * a plain publish of the same messages and bytes; distributed replay with
 * 1, 2 and 4 workers. Needs nats-server on PATH. */
int bench_fleet(bench_report *rep, const bench_config *c, const bench_workload *small,
                const bench_workload *chat);

/* What deja proxy adds over calling deja serve directly (proxy.c). */
int bench_proxy(bench_report *rep, const bench_config *c);

/* deja-bench --measure-exec CMD...: see ls_big.c. */
int bench_measure_exec_main(char **argv);

#endif /* DEJA_BENCH_H */
