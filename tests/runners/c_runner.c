/*
 * tests/runners/c_runner.c -- a runner in C, through deja_runner_main():
 * the test model of the `exec:` protocol (test_runner.c), also the one
 * `./run bench` times. ARG (argv[1]) names its behaviour:
 *   "echo"  (default) outputs "echo" = the input "x" as given, and "ctx" =
 *           u64 [seed "s", 2 draws of stream "noise", 5 draws of stream
 *           "batch" asked at once, the clock], so every ctx value comes back
 *           to the test;
 *   "noop"  consumes 2 draws of stream "noise" and outputs nothing else
 *           than a 1-byte "y" (the bench's do-nothing model);
 *   "shifted" as "echo", but the seed it outputs is off by one: a version
 *           that diverges, for bisect;
 *   "badopen" fails to load.
 * The param "action" (string) changes one inference: "fail" reports a
 * failure, "crash" aborts, "exit" exits with status 3, "hang" sleeps for
 * an hour, "print" writes to stdout (harmless: deja_runner_main moved it
 * to stderr), "note" passes a note to the host (deja_ctx_note).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deja_model.h"

typedef struct inst {
    int noop;
    int shifted;
} inst;

static int c_open(const char *arg, void **instance, deja_model_info *info, char *err,
                  size_t errcap)
{
    inst *in;
    if (arg != NULL && strcmp(arg, "badopen") == 0) {
        snprintf(err, errcap, "no weights at /nonexistent");
        return 1;
    }
    in = calloc(1, sizeof *in);
    if (in == NULL)
        return 1;
    in->noop = arg != NULL && strcmp(arg, "noop") == 0;
    in->shifted = arg != NULL && strcmp(arg, "shifted") == 0;
    if (!in->noop)
        fprintf(stderr, "runner started, pid %ld\n", (long)getpid());
    memcpy(info->digest, "c-runner-weights", 16);
    info->digest_size = 16;
    *instance = in;
    return 0;
}

static int c_infer(void *instance, deja_ctx *ctx)
{
    inst *in = instance;
    const deja_param *action = deja_ctx_param(ctx, "action");
    const char *a = action && action->kind == DEJA_PARAM_STR ? action->str : "";
    uint64_t v[9];
    uint64_t shape[1] = {9};

    if (in->noop) {
        uint64_t d[2];
        d[0] = deja_ctx_rng_u64(ctx, "noise");
        d[1] = deja_ctx_rng_u64(ctx, "noise");
        return deja_ctx_output_text(ctx, "y", d[0] == d[1] ? "=" : "~", 1);
    }
    if (strcmp(a, "fail") == 0) {
        deja_ctx_fail(ctx, "asked to fail");
        return 1;
    }
    if (strcmp(a, "crash") == 0)
        abort();
    if (strcmp(a, "exit") == 0)
        _exit(3);
    if (strcmp(a, "hang") == 0)
        sleep(3600);
    if (strcmp(a, "note") == 0)
        deja_ctx_note(ctx, "a note from the runner");
    if (strcmp(a, "print") == 0) {
        printf("a stray line on stdout\n");
        fflush(stdout);
    }
    v[0] = deja_ctx_seed(ctx, "s") + (uint64_t)in->shifted;
    v[1] = deja_ctx_rng_u64(ctx, "noise");
    v[2] = deja_ctx_rng_u64(ctx, "noise");
    deja_ctx_rng_fill(ctx, "batch", &v[3], 5);
    v[8] = (uint64_t)deja_ctx_now(ctx);
    const deja_tensor *x = deja_ctx_input(ctx, "x");
    if (x != NULL) {
        deja_tensor echo = *x;
        echo.name = "echo";
        if (deja_ctx_output(ctx, &echo) != 0)
            return 1;
    }
    fprintf(stderr, "served one\n");
    deja_tensor t = {"ctx", DEJA_U64, 1, shape, v, sizeof v};
    return deja_ctx_output(ctx, &t);
}

static void c_close(void *instance)
{
    free(instance);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "crunner", "1", 0, c_open, c_infer, c_close,
};

int main(int argc, char **argv)
{
    return deja_runner_main(&plugin, argc, argv);
}
