/*
 * replay/summary.h -- counting a replay's verdicts into its summary, the
 * one rule for a replay on this machine (replay.c) and one through the
 * fleet's workers (fleet/replay.c).
 */
#ifndef DEJA_REPLAY_SUMMARY_H
#define DEJA_REPLAY_SUMMARY_H

#include "deja.h"

/* Count one trace of verdict `verdict` into `sum` (total and its verdict;
 * anything but same, close, nondeterministic and diverged is an error). */
void deja__summary_add(deja_replay_summary *sum, deja_verdict verdict);

#endif /* DEJA_REPLAY_SUMMARY_H */
