/*
 * bench/main.c -- deja-bench: options, and the order of the passes.
 *
 *   deja-bench [--quick] [--out FILE] [--seconds S] [--workloads LIST]
 *              [--passes LIST] [--systems LIST] [--rebuild] [--keep]
 *
 * The full run takes about four to five minutes on two cores; --quick is a
 * ~30 s smoke run on smaller sets whose figures are not comparable to the
 * targets (marked n/a where the target assumes the full size).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifndef DEJA_BENCH_BUILD_DIR
#define DEJA_BENCH_BUILD_DIR "."
#endif
#ifndef DEJA_BENCH_DEJA_BIN
#define DEJA_BENCH_DEJA_BIN DEJA_BENCH_BUILD_DIR "/bin/deja"
#endif

/* Print the options to `to`. */
static void usage(FILE *to)
{
    fprintf(to,
            "usage: deja-bench [options]\n"
            "  --quick            a ~30 s smoke run on small sets\n"
            "  --out FILE         write the figures as JSON (default %s/bench.json)\n"
            "  --seconds S        seconds per ingest configuration (default 10, quick 0.5)\n"
            "  --workloads LIST   small,chat,tensor (default all)\n"
            "  --passes LIST      hot,bytes,ingest,burst,budget,ls,watch,fleet,proxy (default all)\n"
            "  --systems LIST     deja,jsonl,sqlite,lmdb (default all)\n"
            "  --rebuild          rebuild the cached store used by the ls figures\n"
            "  --keep             keep the scratch directory\n",
            DEJA_BENCH_BUILD_DIR);
}

/* Whether the comma-separated `list` (NULL = everything) names `word`. */
static int listed(const char *list, const char *word)
{
    const size_t n = strlen(word);
    const char *p = list;
    if (list == NULL) {
        return 1;
    }
    while ((p = strstr(p, word)) != NULL) {
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) {
            return 1;
        }
        p += n;
    }
    return 0;
}

typedef struct options {
    const char *out;
    const char *workloads;
    const char *passes;
    const char *systems;
    double seconds;
    int quick;
    int rebuild;
    int keep;
} options;

/* Parse argv into `o`. Returns 0, 1 for --help, or -1 on bad usage. */
static int parse(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"quick", no_argument, NULL, 'q'},         {"out", required_argument, NULL, 'o'},
        {"seconds", required_argument, NULL, 's'}, {"workloads", required_argument, NULL, 'w'},
        {"passes", required_argument, NULL, 'p'},  {"systems", required_argument, NULL, 'S'},
        {"rebuild", no_argument, NULL, 'r'},       {"keep", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "qo:s:w:p:S:rkh", longs, NULL)) != -1) {
        switch (ch) {
        case 'q': o->quick = 1; break;
        case 'o': o->out = optarg; break;
        case 's':
            o->seconds = strtod(optarg, NULL);
            if (o->seconds <= 0 || o->seconds > 600) {
                fprintf(stderr, "deja-bench: --seconds: expected 0 < S <= 600\n");
                return -1;
            }
            break;
        case 'w': o->workloads = optarg; break;
        case 'p': o->passes = optarg; break;
        case 'S': o->systems = optarg; break;
        case 'r': o->rebuild = 1; break;
        case 'k': o->keep = 1; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "deja-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Run the passes of one workload. */
static void run_workload(bench_report *rep, const bench_config *c, const options *o,
                         const bench_workload *w, size_t hot_spans)
{
    if (listed(o->passes, "hot")) {
        fprintf(stderr, "deja-bench: hot path, %s (%zu spans per system)\n", w->name,
                hot_spans);
        bench_hot_path(rep, c, w, hot_spans);
    }
    if (listed(o->passes, "bytes")) {
        fprintf(stderr, "deja-bench: bytes on disk and read-back, %s (%zu traces)\n", w->name,
                w->nrecs);
        bench_bytes_and_read(rep, c, w);
    }
}

/* Run the selected passes, print the table and write the JSON. Exit 0, or 2
 * on bad usage or when the JSON cannot be written. */
int main(int argc, char **argv)
{
    options o = {DEJA_BENCH_BUILD_DIR "/bench.json", NULL, NULL, NULL, 0, 0, 0, 0};
    bench_config c;
    bench_report rep;
    bench_workload small = {0}, chat = {0}, tensor = {0};
    const char *names[SYS_COUNT] = {"deja", "jsonl", "sqlite", "lmdb"};
    int rc, sys;
    memset(&rep, 0, sizeof(rep));
    if (argc > 1 && strcmp(argv[1], "--measure-exec") == 0) {
        return bench_measure_exec_main(argv + 2);
    }
    rc = parse(argc, argv, &o);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    memset(&c, 0, sizeof(c));
    c.quick = o.quick;
    c.workdir = DEJA_BENCH_BUILD_DIR "/bench-work";
    c.cachedir = DEJA_BENCH_BUILD_DIR "/bench-cache";
    c.deja_bin = DEJA_BENCH_DEJA_BIN;
    c.ingest_seconds = o.seconds > 0 ? o.seconds : o.quick ? 0.5 : 10.0;
    c.ingest_seconds_big = c.ingest_seconds / 2;
    c.hot_spans = o.quick ? 10000 : 50000;
    c.model_ns = 0;
    c.read_repeats = o.quick ? 3 : 5;
    c.big_n = o.quick ? 50000 : 1000000;
    c.ls_runs = o.quick ? 3 : 5;
    c.rebuild = o.rebuild;
    c.keep = o.keep;
    for (sys = 0; sys < SYS_COUNT; sys++) {
        if (listed(o.systems, names[sys])) {
            c.systems |= 1u << sys;
        }
    }
    rep.quick = o.quick;
    bench_clock_init();
    rep.started = bench_now();
    if (bench_rmrf(c.workdir) != 0 || bench_mkdirs(c.workdir) != 0) {
        fprintf(stderr, "deja-bench: cannot create %s\n", c.workdir);
        return 2;
    }
    fprintf(stderr, "deja-bench: generating workloads%s\n", o.quick ? " (quick)" : "");
    if ((listed(o.workloads, "small") &&
         bench_workload_small(&small, o.quick ? 3000 : 10000, 0x5eed0001) != 0) ||
        (listed(o.workloads, "chat") &&
         bench_workload_chat(&chat, o.quick ? 100 : 1000, o.quick ? 50 : 100, 0x5eed0002) !=
             0) ||
        (listed(o.workloads, "tensor") &&
         bench_workload_tensor(&tensor, o.quick ? 300 : 1000, o.quick ? 25 : 50,
                               0x5eed0003) != 0)) {
        fprintf(stderr, "deja-bench: out of memory generating the workloads\n");
        return 2;
    }
    if (small.nrecs) {
        run_workload(&rep, &c, &o, &small, c.hot_spans);
    }
    if (chat.nrecs) {
        run_workload(&rep, &c, &o, &chat, c.hot_spans / 5);
    }
    if (tensor.nrecs) {
        run_workload(&rep, &c, &o, &tensor, c.hot_spans / 20);
    }
    if (listed(o.passes, "ingest")) {
        int threads;
        fprintf(stderr, "deja-bench: sustained ingest, %.3g s per configuration\n",
                c.ingest_seconds);
        for (threads = 1; small.nrecs && threads <= 4; threads *= 2) {
            bench_ingest(&rep, &c, &small, threads);
        }
        /* One thread only for the larger records: the 5-minute budget. */
        if (chat.nrecs) {
            bench_ingest(&rep, &c, &chat, 1);
        }
        if (tensor.nrecs) {
            bench_ingest(&rep, &c, &tensor, 1);
        }
    }
    if (listed(o.passes, "burst") && (c.systems & (1u << SYS_DEJA))) {
        fprintf(stderr, "deja-bench: a burst of big tensors through the tracer\n");
        bench_burst(&rep, &c);
    }
    if (listed(o.passes, "budget") && small.nrecs && (c.systems & (1u << SYS_DEJA))) {
        fprintf(stderr, "deja-bench: ingest at a disk budget\n");
        bench_budget(&rep, &c, &small);
    }
    if (listed(o.passes, "ls") && (c.systems & (1u << SYS_DEJA))) {
        fprintf(stderr, "deja-bench: ls over a %zu-trace store\n", c.big_n);
        bench_ls_big(&rep, &c);
    }
    if (listed(o.passes, "fleet")) {
        fprintf(stderr, "deja-bench: fleet: ship to JetStream, replay on workers\n");
        bench_fleet(&rep, &c, &small, &chat);
    }
    if (listed(o.passes, "watch") && (c.systems & (1u << SYS_DEJA))) {
        fprintf(stderr, "deja-bench: stats --by, drift and rules over the %zu-trace store\n",
                c.big_n);
        bench_watch_big(&rep, &c);
    }
    if (listed(o.passes, "proxy") && (c.systems & (1u << SYS_DEJA))) {
        fprintf(stderr, "deja-bench: deja proxy in front of deja serve, on loopback\n");
        bench_proxy(&rep, &c);
    }
    if (o.quick) {
        bench_report_note(&rep, "--quick: small sets and short runs; targets on the "
                                "1,000,000-trace store are n/a");
    }
    bench_report_print(&rep);
    rc = bench_report_write_json(&rep, o.out) == 0 ? 0 : 2;
    if (rc == 0) {
        printf("\nfigures written to %s (%.0f s)\n", o.out, bench_now() - rep.started);
    }
    if (!o.keep) {
        bench_rmrf(c.workdir);
    }
    bench_workload_free(&small);
    bench_workload_free(&chat);
    bench_workload_free(&tensor);
    bench_report_free(&rep);
    return rc;
}
