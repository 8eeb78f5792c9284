/*
 * watch/check.c -- validation rules over a store (`deja check`): stream
 * the selection, load blob payloads only for traces that have some, apply
 * the rules, report each violation with its trace.
 */
#include <string.h>

#include "core/error.h"
#include "watch/watch_internal.h"

typedef struct check_state {
    deja_store *store;
    const deja_rules *rules;
    deja_trace_violation_cb cb;
    deja_bad_cb bad;
    void *payload;
    deja_check_summary sum;
    const deja_trace *current;
    int stop;
    int rc;
} check_state;

/* deja_rules_apply callback: pass the violation on with its trace. */
static int on_violation(const deja_violation *v, void *payload)
{
    check_state *s = payload;

    s->sum.violations++;
    if (s->cb != NULL && s->cb(s->current, v, s->payload) != 0)
        s->stop = 1;
    return s->stop;
}

/* Whether some payload of `t` is a blob not loaded by the listing. */
static int needs_blobs(const deja_trace *t)
{
    for (size_t i = 0; i < t->ninputs; i++)
        if (t->inputs[i].data == NULL && t->inputs[i].size > 0)
            return 1;
    for (size_t i = 0; i < t->noutputs; i++)
        if (t->outputs[i].data == NULL && t->outputs[i].size > 0)
            return 1;
    return 0;
}

/* deja_store_list callback: check one trace. */
static int check_one(const deja_trace *listed, void *payload)
{
    check_state *s = payload;
    deja_trace *full = NULL;
    int rc;

    if (needs_blobs(listed)) {
        rc = deja_trace_get(s->store, &listed->id, &full);
        if (rc != 0) {
            s->sum.bad++;
            if (s->bad != NULL && s->bad(&listed->id, rc, deja_error_last(), s->payload) != 0)
                return 1;
            return 0;
        }
    }
    s->current = full ? full : listed;
    s->sum.traces++;
    rc = deja_rules_apply(s->rules, s->current, on_violation, s);
    deja_trace_free(full);
    if (rc < 0) {
        s->rc = rc;
        return 1;
    }
    s->sum.invalid += rc > 0;
    return s->stop;
}

/* deja_store_list callback: an unreadable record. */
static int bad_one(const deja_id *id, int code, const char *message, void *payload)
{
    check_state *s = payload;

    s->sum.bad++;
    return s->bad != NULL ? s->bad(id, code, message, s->payload) : 0;
}

int deja_rules_check_store(deja_store *store, const deja_rules *rules, const deja_filter *filter,
                           deja_trace_violation_cb cb, deja_bad_cb bad, void *payload,
                           deja_check_summary *summary)
{
    check_state s;
    int rc;

    memset(&s, 0, sizeof s);
    if (summary != NULL)
        memset(summary, 0, sizeof *summary);
    if (store == NULL || rules == NULL)
        return deja__error_set(DEJA_EINVAL, "check: store and rules are required");
    s.store = store;
    s.rules = rules;
    s.cb = cb;
    s.bad = bad;
    s.payload = payload;
    rc = deja_store_list(store, filter, check_one, bad_one, &s);
    if (rc == 0)
        rc = s.rc;
    if (summary != NULL)
        *summary = s.sum;
    return rc;
}
