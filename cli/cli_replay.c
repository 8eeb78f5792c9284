/*
 * cli/cli_replay.c -- what the commands that replay share (replay, bisect,
 * diff, worker): the replay options, the crash guard that names the trace
 * whose inference crashed, and a diff printed for a terminal or as JSON.
 */
#include "cli.h"
#include "cli_escape.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Crash handler: name the trace whose inference crashed and suggest
 * --isolate with fixed text (async-signal-safe), then die by the signal. */
static void on_crash(int sig)
{
    static const char head[] = "deja: the model crashed while replaying trace ";
    static const char unknown[] = "deja: the model crashed during the replay";
    static const char tail[] = "; replay with --isolate to make a crash that trace's error\n";
    char text[DEJA_ID_STRLEN + 1];
    deja_id id;
    ssize_t w;
    if (deja_replay_current_trace(&id)) {
        deja_id_format(&id, text);
        w = write(STDERR_FILENO, head, sizeof(head) - 1);
        w = write(STDERR_FILENO, text, DEJA_ID_STRLEN);
    } else {
        w = write(STDERR_FILENO, unknown, sizeof(unknown) - 1);
    }
    w = write(STDERR_FILENO, tail, sizeof(tail) - 1);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Name the crashing trace on stderr if a model crashes in this process. */
void cli_crash_guard(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    size_t i;
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        signal(sigs[i], on_crash);
    }
}

/* Apply a replay option (--jobs, --repeat, --atol, --rtol, --ulps,
 * --max-hunks, --force) to `o`: 1 when applied, 0 when `opt` is not one of them, -1
 * after printing an error for a bad value. */
int cli_replay_option(deja_replay_options *o, int opt, const char *arg)
{
    uint64_t u = 0;
    switch (opt) {
    case OPT_JOBS:
        if (cli_parse_u64(arg, 256, &u) != 0 || u == 0) {
            cli_error("--jobs: expected a number of workers from 1 to 256, got '%s'", arg);
            return -1;
        }
        o->jobs = (unsigned)u;
        return 1;
    case OPT_REPEAT:
        if (cli_parse_u64(arg, 100000, &u) != 0 || u == 0) {
            cli_error("--repeat: expected a count from 1 to 100000, got '%s'", arg);
            return -1;
        }
        o->repeat = (unsigned)u;
        return 1;
    case OPT_ATOL:
    case OPT_RTOL:
        if (cli_parse_double(arg, opt == OPT_ATOL ? &o->diff.atol : &o->diff.rtol) != 0) {
            cli_error("%s: expected a non-negative number, got '%s'",
                      opt == OPT_ATOL ? "--atol" : "--rtol", arg);
            return -1;
        }
        return 1;
    case OPT_ULPS:
        if (cli_parse_u64(arg, UINT64_MAX, &u) != 0) {
            cli_error("--ulps: expected a non-negative integer, got '%s'", arg);
            return -1;
        }
        o->diff.ulps = u;
        return 1;
    case OPT_MAX_HUNKS:
        if (cli_parse_u64(arg, DEJA_DIFF_MAX_HUNKS_LIMIT, &u) != 0 || u == 0) {
            cli_error("--max-hunks: expected a count from 1 to %u, got '%s'",
                      DEJA_DIFF_MAX_HUNKS_LIMIT, arg);
            return -1;
        }
        o->diff.max_hunks = (unsigned)u;
        return 1;
    case OPT_FORCE:
        o->force = 1;
        return 1;
    case OPT_ISOLATE:
        o->isolate = 1;
        return 1;
    case OPT_REPLAY_TIMEOUT:
        if (cli_parse_double(arg, &o->timeout) != 0 || o->timeout > 1e9) {
            cli_error("--timeout: expected seconds (0 for no limit), got '%s'", arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

/* Print one line per output that differs in `d`, each starting with
 * `indent`; `name_a` and `name_b` name the two sides ("recorded",
 * "replayed"). */
void cli_diff_print(FILE *fp, const deja_diff *d, const char *indent, const char *name_a,
                    const char *name_b)
{
    size_t i;
    for (i = 0; i < d->ntensors; i++) {
        const deja_tensor_diff *t = &d->tensors[i];
        switch (t->kind) {
        case DEJA_DIFF_EQUAL:
            break;
        case DEJA_DIFF_ONLY_A:
            fprintf(fp, "%s%s: %s only, absent from %s\n", indent, cli_term(t->name), name_a, name_b);
            break;
        case DEJA_DIFF_ONLY_B:
            fprintf(fp, "%s%s: %s only, absent from %s\n", indent, cli_term(t->name), name_b, name_a);
            break;
        default:
            fprintf(fp, "%s%s: %s\n", indent, cli_term(t->name), cli_term(t->detail));
            break;
        }
    }
}

/* A number for JSON: a real when finite, else the string "inf"/"nan". */
static json_t *json_num(double v)
{
    if (isfinite(v)) {
        return json_real(v);
    }
    return json_string(isnan(v) ? "nan" : "inf");
}

static const char *kind_name(deja_diff_kind k)
{
    switch (k) {
    case DEJA_DIFF_EQUAL:
        return "equal";
    case DEJA_DIFF_VALUES:
        return "values";
    case DEJA_DIFF_DTYPE:
        return "dtype";
    case DEJA_DIFF_SHAPE:
        return "shape";
    case DEJA_DIFF_ONLY_A:
        return "only_a";
    default:
        return "only_b";
    }
}

/* A diff as JSON: {"verdict","summary","outputs":[...]}. New reference,
 * or NULL when out of memory. */
json_t *cli_diff_json(const deja_diff *d)
{
    json_t *o = json_object(), *arr = json_array();
    size_t i;
    int bad = !o || !arr;
    for (i = 0; !bad && i < d->ntensors; i++) {
        const deja_tensor_diff *t = &d->tensors[i];
        const char *da = deja_dtype_name(t->dtype_a), *db = deja_dtype_name(t->dtype_b);
        json_t *e = json_pack(
            "{s:o, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:o}", "name", cli_json_text(t->name),
            "kind", kind_name(t->kind), "verdict", deja_verdict_name(t->verdict), "dtype_a",
            da ? json_string(da) : json_null(), "dtype_b", db ? json_string(db) : json_null(),
            "count", (json_int_t)t->count, "differ", (json_int_t)t->ndiff, "beyond_tolerance",
            (json_int_t)t->nbeyond, "first", (json_int_t)t->first, "detail",
            cli_json_text(t->detail));
        if (!e) {
            bad = 1;
            break;
        }
        if (t->dtype_a == DEJA_F16 || t->dtype_a == DEJA_BF16 || t->dtype_a == DEJA_F32 ||
            t->dtype_a == DEJA_F64) {
            bad |= json_object_set_new(e, "max_abs", json_num(t->max_abs)) != 0;
            bad |= json_object_set_new(e, "max_rel", json_num(t->max_rel)) != 0;
            bad |= json_object_set_new(e, "worst", json_integer(t->worst)) != 0;
            bad |= json_object_set_new(
                       e, "max_ulps",
                       json_integer(
                           (json_int_t)(t->max_ulps > INT64_MAX ? INT64_MAX : t->max_ulps))) != 0;
            bad |= json_object_set_new(e, "nan_inf_mismatch", json_integer((json_int_t)t->nnan));
        }
        if (t->is_scores) {
            json_t *s =
                json_pack("{s:I, s:I, s:I}", "rows", (json_int_t)t->rows, "label_changed",
                          (json_int_t)t->rows_label, "topk_changed", (json_int_t)t->rows_topk);
            if (s && t->rows_label) {
                bad |= json_object_set_new(s, "row", json_integer(t->label_row)) != 0;
                bad |= json_object_set_new(s, "label_a", json_integer(t->label_a)) != 0;
                bad |= json_object_set_new(s, "label_b", json_integer(t->label_b)) != 0;
            }
            bad |= !s || json_object_set_new(e, "scores", s) != 0;
        }
        if (t->hunk) {
            bad |= json_object_set_new(e, "hunk", cli_json_text(t->hunk)) != 0;
        }
        bad |= json_array_append_new(arr, e) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(o, "verdict", json_string(deja_verdict_name(d->verdict)));
        bad |= json_object_set_new(o, "summary", cli_json_text(d->summary));
        bad |= json_object_set_new(o, "outputs", arr) != 0;
        arr = NULL;
    }
    if (bad) {
        json_decref(arr);
        json_decref(o);
        return NULL;
    }
    return o;
}
