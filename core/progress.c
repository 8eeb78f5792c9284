/*
 * core/progress.c -- the calling thread's progress handler: what the long
 * store and bundle operations (verify, gc, compact, export, import) report
 * their progress to. Per thread, like the last error, so that an operation
 * reports to whoever called it and no signature grows a callback.
 */
#include "core/progress.h"

static _Thread_local deja_progress_cb handler;
static _Thread_local void *handler_payload;

void deja_progress_handler(deja_progress_cb cb, void *payload)
{
    handler = cb;
    handler_payload = cb != NULL ? payload : NULL;
}

void deja__progress(uint64_t done, uint64_t total)
{
    if (handler != NULL)
        handler((size_t)(done < total ? done : total), (size_t)total, handler_payload);
}

void deja__progress_get(deja_progress_cb *cb, void **payload)
{
    *cb = handler;
    *payload = handler_payload;
}
