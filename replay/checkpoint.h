/*
 * replay/checkpoint.h -- comparing a replay's checkpoints with the recorded
 * ones as the model produces them (replay/checkpoint.c), for replay.c.
 * Private to the replay room.
 */
#ifndef DEJA_REPLAY_CHECKPOINT_H
#define DEJA_REPLAY_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"

/* What a comparison concluded, owning every string; viewed through
 * deja__ckpt_report_view() as the public deja_checkpoint_diff. */
typedef struct deja__ckpt_report {
    uint64_t recorded, compared, identical;
    uint64_t has_first, first_index, first_occurrence, first_verdict, stopped;
    char *first, *first_detail, *token, *summary;
    char **absent;
    size_t nabsent;
    char **extra;
    size_t nextra;
    deja_checkpoint_diff view; /* filled by deja__ckpt_report_view */
} deja__ckpt_report;

typedef struct deja__ckpt_cmp deja__ckpt_cmp;

/* Whether trace `t` has checkpoints to compare (recorded ones, or a
 * selection that would have kept some). */
int deja__ckpt_wanted(const deja_trace *t);

/* A comparator over the recorded checkpoints of `t` (which must outlive
 * it), comparing floats with `dopt`; with `stop_at_first` its callback
 * returns DEJA_CHECKPOINT_STOP at the first divergence. Returns 0 or
 * DEJA_ENOMEM. */
int deja__ckpt_cmp_new(deja__ckpt_cmp **out, const deja_trace *t, const deja_diff_options *dopt,
                       int stop_at_first);

/* The deja_checkpoint_cb of a comparator (payload: the comparator). */
int deja__ckpt_cmp_cb(const deja_tensor *tensor, void *payload);

/* End the comparison: the report (absent checkpoints, summary) moves to
 * `*out`, owned by the caller (deja__ckpt_report_free). Returns 0 or
 * DEJA_ENOMEM (the first error met while comparing, if any). */
int deja__ckpt_cmp_finish(deja__ckpt_cmp *c, deja__ckpt_report **out);

void deja__ckpt_cmp_free(deja__ckpt_cmp *c);

/* A new empty report (for the isolated child's answer), or NULL. */
deja__ckpt_report *deja__ckpt_report_new(void);

/* Append a copy of `line` to the absent (`extra` 0) or extra list.
 * Returns 0 or DEJA_ENOMEM. */
int deja__ckpt_report_add(deja__ckpt_report *r, int extra, const char *line);

/* Point r->view at r's fields and return it. */
const deja_checkpoint_diff *deja__ckpt_report_view(deja__ckpt_report *r);

void deja__ckpt_report_free(deja__ckpt_report *r);

#endif /* DEJA_REPLAY_CHECKPOINT_H */
