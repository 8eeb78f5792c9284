/*
 * cli/cli_checkpoint.c -- checkpoints on the command line: a trace's
 * recorded checkpoints for `deja show` (text and JSON), and how a replay's
 * checkpoints compared for `deja replay` (text and JSON).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_escape.h"

/* Checkpoints listed by `show` at most (the JSON has them all). */
#define MAX_LISTED 64

/* Write "[2,3]" for a shape. */
static void put_shape(FILE *fp, const uint64_t *shape, size_t ndim)
{
    fputc('[', fp);
    for (size_t d = 0; d < ndim; d++)
        fprintf(fp, "%s%" PRIu64, d ? "," : "", shape[d]);
    fputc(']', fp);
}

void cli_checkpoints_print(FILE *fp, const deja_trace *t)
{
    if (t->ncheckpoints == 0 && (t->checkpoint_select == NULL || !t->checkpoint_select[0]))
        return;
    fprintf(fp, "checkpoints %zu", t->ncheckpoints);
    if (t->checkpoint_select && t->checkpoint_select[0]) {
        fputs(" (selection ", fp);
        cli_put_term(fp, t->checkpoint_select);
        fputc(')', fp);
    }
    fputc('\n', fp);
    for (size_t i = 0; i < t->ncheckpoints && i < MAX_LISTED; i++) {
        const deja_checkpoint *c = &t->checkpoints[i];
        const char *dt = deja_dtype_name(c->tensor.dtype);
        char d[33];
        deja_digest_format(&c->digest, d);
        fputs("  ", fp);
        cli_put_term(fp, c->tensor.name);
        fprintf(fp, "  %s", dt ? dt : "?");
        put_shape(fp, c->tensor.shape, c->tensor.ndim);
        if (c->stats.numeric)
            fprintf(fp, "  min %.6g max %.6g mean %.6g", c->stats.min, c->stats.max,
                    c->stats.mean);
        if (c->stats.nnan || c->stats.ninf)
            fprintf(fp, "  NaN %" PRIu64 " Inf %" PRIu64, c->stats.nnan, c->stats.ninf);
        fprintf(fp, "  %.16s%s\n", d, c->digest_only ? " (digest only)" : "");
    }
    if (t->ncheckpoints > MAX_LISTED)
        fprintf(fp, "  ... %zu more (--json lists them all)\n", t->ncheckpoints - MAX_LISTED);
}

json_t *cli_checkpoints_json(const deja_trace *t, int with_data)
{
    json_t *arr = json_array();
    int bad = arr == NULL;
    for (size_t i = 0; i < t->ncheckpoints && !bad; i++) {
        const deja_checkpoint *c = &t->checkpoints[i];
        json_t *o = cli_tensor_json(&c->tensor, c->digest_only ? 0 : with_data);
        char d[33];
        deja_digest_format(&c->digest, d);
        bad = o == NULL;
        bad = bad || json_object_set_new(o, "digest", json_string(d)) != 0;
        bad = bad || json_object_set_new(o, "digest_only", json_boolean(c->digest_only)) != 0;
        if (!bad && c->stats.numeric) {
            json_t *s = json_pack("{s:f, s:f, s:f, s:I, s:I}", "min", c->stats.min, "max",
                                  c->stats.max, "mean", c->stats.mean, "nan",
                                  (json_int_t)c->stats.nnan, "inf", (json_int_t)c->stats.ninf);
            bad = s == NULL || json_object_set_new(o, "summary", s) != 0;
        } else if (!bad) {
            bad = json_object_set_new(o, "summary", json_null()) != 0;
        }
        bad = bad || json_array_append_new(arr, o) != 0;
        if (bad && o != NULL)
            json_decref(o);
    }
    if (bad) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

void cli_checkpoint_diff_print(FILE *fp, const deja_checkpoint_diff *c, const char *indent)
{
    if (c == NULL)
        return;
    fprintf(fp, "%scheckpoints: ", indent);
    cli_put_term(fp, c->summary);
    fputc('\n', fp);
    if (c->token != NULL) {
        fprintf(fp, "%s", indent);
        cli_put_term(fp, c->token);
        fputc('\n', fp);
    }
    for (size_t i = 0; i < c->nabsent; i++) {
        fprintf(fp, "%scheckpoint absent on replay: ", indent);
        cli_put_term(fp, c->absent[i]);
        fputc('\n', fp);
    }
    for (size_t i = 0; i < c->nextra; i++) {
        fprintf(fp, "%scheckpoint extra on replay (not recorded): ", indent);
        cli_put_term(fp, c->extra[i]);
        fputc('\n', fp);
    }
}

/* A list of strings as a JSON array, or NULL. */
static json_t *strings(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, cli_json_text(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *cli_checkpoint_diff_json(const deja_checkpoint_diff *c)
{
    json_t *first = json_null();
    if (c->first != NULL) {
        first = json_pack("{s:o, s:I, s:I, s:s, s:o}", "name", cli_json_text(c->first), "index",
                          (json_int_t)c->first_index, "occurrence",
                          (json_int_t)c->first_occurrence, "verdict",
                          deja_verdict_name(c->first_verdict), "detail",
                          cli_json_text(c->first_detail ? c->first_detail : ""));
    }
    json_t *absent = strings(c->absent, c->nabsent);
    json_t *extra = strings(c->extra, c->nextra);
    if (first == NULL || absent == NULL || extra == NULL) {
        json_decref(first);
        json_decref(absent);
        json_decref(extra);
        return NULL;
    }
    return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:b, s:o}", "recorded",
                     (json_int_t)c->recorded, "compared", (json_int_t)c->compared, "identical",
                     (json_int_t)c->identical, "first", first, "token",
                     c->token ? cli_json_text(c->token) : json_null(), "absent", absent, "extra",
                     extra, "stopped", c->stopped, "summary", cli_json_text(c->summary));
}
