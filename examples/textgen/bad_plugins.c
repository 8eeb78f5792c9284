/*
 * bad_plugins.c -- deliberately broken model plugins for tests/test_model.c.
 * Built once per switch:
 *   -DBAD_NOENTRY   test-noentry.so: a shared object without deja_model_entry
 *   -DBAD_ABI       test-badabi.so:  claims model ABI 7
 *   -DBAD_NULLNAME  test-nullname.so: a NULL model name
 *   -DBAD_OPEN      test-openfail.so: open() fails with a message
 *   -DBAD_INFER     test-inferfail.so: infer() returns 3 without a message,
 *                   or fails through the ctx when the param "fail" is set
 */
#include <stdio.h>

#include "deja_model.h"

#ifdef BAD_NOENTRY
int not_a_deja_plugin(void) __attribute__((visibility("default")));

/* Something to export, so that the object is a real shared library. */
int not_a_deja_plugin(void)
{
    return 42;
}
#else

const deja_model_plugin *deja_model_entry(void) __attribute__((visibility("default")));

static int bad_open(const char *arg, void **instance, deja_model_info *info, char *err,
                    size_t errcap)
{
#ifdef BAD_OPEN
    snprintf(err, errcap, "weights file %s is missing", arg ? arg : "(default)");
    return 1;
#else
    *instance = NULL;
    return 0;
#endif
}

static int bad_infer(void *instance, deja_ctx *ctx)
{
    if (deja_ctx_param(ctx, "fail")) {
        deja_ctx_fail(ctx, "asked to fail");
        return 1;
    }
    return 3;
}

static void bad_close(void *instance)
{
}

#if defined(BAD_ABI)
#define ABI 7
#else
#define ABI DEJA_MODEL_ABI_VERSION
#endif
#if defined(BAD_NULLNAME)
#define NAME NULL
#else
#define NAME "bad"
#endif

static const deja_model_plugin plugin = {ABI, NAME, "1", 0, bad_open, bad_infer, bad_close};

/* The plugin's one export. */
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
#endif
