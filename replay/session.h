/*
 * replay/session.h -- a replay engine kept open across runs: the model
 * (and any baseline) loaded once, the recorded environments compared once,
 * for a caller that replays traces in many small groups (a fleet worker,
 * fleet/worker.c). deja_replay_run is one session with one run.
 */
#ifndef DEJA_REPLAY_SESSION_H
#define DEJA_REPLAY_SESSION_H

#include <stddef.h>

#include "deja.h"

typedef struct deja__replay_session deja__replay_session;

/* Open a session replaying traces of `store` on `model_spec` with `opts`
 * (as deja_replay_run takes them; NULL for the defaults): check the
 * options and load the model, one instance per job thread when it is not
 * thread-safe (jobs = min(opts->jobs, n_hint), n_hint 0 meaning one).
 * Returns 0 and `*out` (deja__replay_session_close it), or the error of
 * deja_replay_run (DEJA_EINVAL, DEJA_EVERSION, the model's load error);
 * `*out` is NULL then. */
int deja__replay_session_open(deja__replay_session **out, deja_store *store,
                              const char *model_spec, const deja_replay_options *opts,
                              size_t n_hint);

/* Replay the `n` traces `ids` of the session's store with its loaded
 * model, exactly as deja_replay_run does: `cb` gets each result in
 * selection order (index 0..n-1 of this run), `summary` (may be NULL) this
 * run's counts. A model instance a timed-out inference still runs in is
 * replaced and kept out of later runs. One run at a time per session.
 * Returns 0 or DEJA_EINVAL/DEJA_ENOMEM/DEJA_EIO (the run did not start or
 * stopped); per-trace failures are results, not errors. */
int deja__replay_session_run(deja__replay_session *ss, const deja_id *ids, size_t n,
                             deja_replay_cb cb, void *payload, deja_replay_summary *summary);

/* The same for `n` traces given themselves, decoded with their blobs
 * attached (not read from the store; their environments are): the run
 * takes them (frees each, and sets traces[i] to NULL). A NULL trace is an
 * ERROR result. */
int deja__replay_session_run_traces(deja__replay_session *ss, deja_trace **traces, size_t n,
                                    deja_replay_cb cb, void *payload,
                                    deja_replay_summary *summary);

/* Unload the model(s) and free the session. Accepts NULL. */
void deja__replay_session_close(deja__replay_session *ss);

#endif /* DEJA_REPLAY_SESSION_H */
