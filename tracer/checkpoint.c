/*
 * tracer/checkpoint.c -- recording checkpoints: named intermediate values
 * of one inference, kept in the order the model produced them.
 *
 * The run decides what is kept (deja_tracer_options.checkpoints): nothing
 * (the default: deja_span_checkpoint returns after one test), everything,
 * or the names of a comma-separated selection ("embed,layer*"). A kept
 * checkpoint is copied into the span's arena, or, digest-only, reduced to
 * its XXH3-128 and a summary on the calling thread (no bytes kept). Sizes
 * are bounded (DEJA_CHECKPOINT_MAX*): beyond them a checkpoint keeps its
 * digest only, and past the count it is dropped and the trace tagged.
 *
 * Room tracer/: calls core/, proto/ (the tensor summary) and the span's
 * arena (span.c).
 */
#include <string.h>

#include "core/error.h"
#include "core/text.h"
#include "tracer/tracer_internal.h"

/* Longest selection accepted. */
#define MAX_SELECT 4096

/* Whether `name` matches the selection entry `e` of `len` bytes: equal, or
 * `e` ends in '*' and is a prefix of `name`. */
static int entry_matches(const char *e, size_t len, const char *name)
{
    if (len != 0 && e[len - 1] == '*')
        return strncmp(name, e, len - 1) == 0;
    return strlen(name) == len && memcmp(name, e, len) == 0;
}

/* Whether checkpoint `name` is kept by `select` ("all", or names separated
 * by commas; NULL, "" and "none" keep nothing); see include/deja.h. */
int deja_checkpoint_select_match(const char *select, const char *name)
{
    if (select == NULL || name == NULL || select[0] == '\0' || strcmp(select, "none") == 0)
        return 0;
    if (strcmp(select, "all") == 0)
        return 1;
    const char *p = select;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (entry_matches(p, len, name))
            return 1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Check a selection: "all", "none", or non-empty names without control
 * characters, spaces or a '*' but at the end, separated by commas. Returns
 * 0 or DEJA_EINVAL naming the problem. */
int deja_checkpoint_select_check(const char *select)
{
    if (select == NULL || strcmp(select, "all") == 0 || strcmp(select, "none") == 0)
        return 0;
    if (select[0] == '\0' || strlen(select) > MAX_SELECT)
        return deja__error_set(DEJA_EINVAL, "checkpoints: expected all, none or NAME,... (at most "
                                            "%d bytes), got '%s'", MAX_SELECT, select);
    const char *p = select;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return deja__error_set(DEJA_EINVAL, "checkpoints: an empty name in '%s'", select);
        for (size_t i = 0; i < len; i++) {
            const unsigned char c = (unsigned char)p[i];
            if (c <= ' ' || c == 0x7f || (c == '*' && i + 1 != len))
                return deja__error_set(DEJA_EINVAL,
                                       "checkpoints: bad character in '%.*s' (names have no "
                                       "spaces or control characters; '*' only at the end)",
                                       (int)len, p);
        }
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Set the tracer's selection from its options: a private copy, NULL when
 * nothing is kept. Returns 0, DEJA_EINVAL or DEJA_ENOMEM. */
int deja__tracer_checkpoints_init(deja_tracer *t)
{
    const char *sel = t->opts.checkpoints;
    t->opts.checkpoints = NULL; /* the caller's string is not kept */
    if (deja_checkpoint_select_check(sel) != 0)
        return DEJA_EINVAL;
    t->ckpt_digest = t->opts.checkpoints_digest != 0;
    if (sel == NULL || strcmp(sel, "none") == 0)
        return 0;
    if ((t->ckpt_select = strdup(sel)) == NULL)
        return deja__error_set(DEJA_ENOMEM, "tracer open: out of memory");
    t->ckpt_all = strcmp(sel, "all") == 0;
    return 0;
}

/* Whether the span's tracer keeps checkpoint `name`; see include/deja.h. */
int deja_span_checkpoint_wanted(const deja_span *span, const char *name)
{
    if (span == NULL || name == NULL || span->tracer->ckpt_select == NULL)
        return 0;
    return span->tracer->ckpt_all || deja_checkpoint_select_match(span->tracer->ckpt_select, name);
}

/* Record `tensor` as the span's next checkpoint when selected; see
 * include/deja.h. */
int deja_span_checkpoint(deja_span *span, const deja_tensor *tensor)
{
    int rc = 0;
    if (span == NULL || tensor == NULL || tensor->name == NULL)
        return deja__error_set(DEJA_EINVAL, "span checkpoint: span, tensor and name are required");
    const deja_tracer *t = span->tracer;
    if (t->ckpt_select == NULL) /* the default: nothing kept, one test */
        return 0;
    if (!t->ckpt_all && !deja_checkpoint_select_match(t->ckpt_select, tensor->name))
        return 0;
    if ((rc = deja__tensor_check(tensor)) != 0)
        return rc;
    const char *why = deja__text_problem(tensor->name); /* the rule of every recorded name */
    if (why[0] != '\0')
        return deja__error_set(DEJA_EINVAL, "span checkpoint: a name %s", why);
    if (span->nckpts >= DEJA_CHECKPOINT_MAX) {
        if (!span->ckpt_dropped) {
            span->ckpt_dropped = 1;
            return deja_span_tag(span, "deja.checkpoints", "dropped");
        }
        return 0;
    }
    if (span->nckpts == span->cap_ckpts) {
        const size_t ncap = span->cap_ckpts != 0 ? span->cap_ckpts * 2 : 16;
        deja_checkpoint *p = deja__span_alloc(span, ncap * sizeof *p);
        if (p == NULL)
            return deja__error_set(DEJA_ENOMEM, "span checkpoint: out of memory");
        if (span->nckpts != 0)
            memcpy(p, span->ckpts, span->nckpts * sizeof *p);
        span->ckpts = p;
        span->cap_ckpts = ncap;
    }
    const int digest_only = t->ckpt_digest || tensor->size > DEJA_CHECKPOINT_MAX_BYTES ||
                            span->ckpt_bytes + tensor->size > DEJA_CHECKPOINT_TRACE_BYTES;
    const size_t nlen = strlen(tensor->name);
    const size_t nshape = tensor->ndim != 0 ? tensor->ndim : 1;
    if (nlen > DEJA__MAX_NAME)
        return deja__error_set(DEJA_EINVAL, "span checkpoint: name longer than %d bytes",
                               DEJA__MAX_NAME);
    uint8_t *mem = deja__span_alloc(span, nshape * sizeof(uint64_t) + nlen + 1);
    void *data = NULL;
    if (mem == NULL ||
        (!digest_only && (data = deja__span_payload_copy(span, tensor->data, tensor->size)) == NULL))
        return deja__error_set(DEJA_ENOMEM, "span checkpoint '%s': out of memory", tensor->name);
    uint64_t *shape = (uint64_t *)(void *)mem;
    char *name = (char *)mem + nshape * sizeof(uint64_t);
    if (tensor->ndim != 0)
        memcpy(shape, tensor->shape, tensor->ndim * sizeof *shape);
    memcpy(name, tensor->name, nlen + 1);
    deja_checkpoint *c = &span->ckpts[span->nckpts];
    memset(c, 0, sizeof *c);
    c->tensor = (deja_tensor){name, tensor->dtype, tensor->ndim, shape, NULL, tensor->size};
    if (digest_only) {
        c->digest_only = 1;
        c->digest = deja_digest_of(tensor->data, tensor->size);
        if ((rc = deja_tensor_stats_of(tensor, &c->stats)) != 0)
            return rc;
    } else {
        c->tensor.data = data;
        span->ckpt_bytes += tensor->size;
    }
    span->nckpts++;
    return 0;
}
