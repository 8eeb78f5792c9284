/*
 * core/error.c -- return-code names and the per-thread error message.
 *
 * Every failing deja function leaves a one-line message in a thread-local
 * buffer; deja_error_last() returns it. Messages longer than the buffer are
 * truncated, never overflowed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "deja.h"
#include "core/error.h"

#define ERROR_MAX 1024

static _Thread_local char last_error[ERROR_MAX];

/* Return the name of return code `code` ("not found", "corrupt", ...).
 * Never NULL: an unknown code gives "unknown error". */
const char *deja_strerror(int code)
{
    switch (code) {
    case DEJA_OK:
        return "ok";
    case DEJA_ENOTFOUND:
        return "not found";
    case DEJA_EAMBIGUOUS:
        return "ambiguous";
    case DEJA_ECORRUPT:
        return "corrupt";
    case DEJA_EIO:
        return "I/O error";
    case DEJA_EINVAL:
        return "invalid argument";
    case DEJA_ENOMEM:
        return "out of memory";
    case DEJA_EVERSION:
        return "version mismatch";
    case DEJA_EFULL:
        return "queue full";
    case DEJA_EMODEL:
        return "model error";
    case DEJA_EBUSY:
        return "busy";
    default:
        return "unknown error";
    }
}

/* Return the calling thread's last error message, or "" if none was set.
 * The string stays valid until the next deja call on this thread. */
const char *deja_error_last(void)
{
    return last_error;
}

/* Format the message into the calling thread's buffer and return `code`.
 * The arguments may point into the current message (it is formatted into a
 * scratch buffer first). A NULL `fmt` clears the message. */
int deja__error_set(int code, const char *fmt, ...)
{
    char tmp[ERROR_MAX];
    va_list ap;

    if (fmt == NULL) {
        last_error[0] = '\0';
        return code;
    }
    va_start(ap, fmt);
    if (vsnprintf(tmp, sizeof tmp, fmt, ap) < 0)
        tmp[0] = '\0';
    va_end(ap);
    memcpy(last_error, tmp, sizeof tmp);
    return code;
}

/* Prefix the calling thread's message with the formatted context and
 * return `code` unchanged. With no current message the context alone
 * (without a trailing ": ") becomes the message. */
int deja__error_wrap(int code, const char *fmt, ...)
{
    char tmp[ERROR_MAX];
    size_t plen;
    size_t olen;
    va_list ap;

    if (fmt == NULL)
        return code;
    va_start(ap, fmt);
    if (vsnprintf(tmp, sizeof tmp, fmt, ap) < 0)
        tmp[0] = '\0';
    va_end(ap);
    plen = strlen(tmp);
    olen = strlen(last_error);
    if (olen == 0) {
        /* Nothing to wrap: drop a dangling ": " from the context. */
        while (plen > 0 && (tmp[plen - 1] == ' ' || tmp[plen - 1] == ':'))
            tmp[--plen] = '\0';
        memcpy(last_error, tmp, plen + 1);
        return code;
    }
    if (plen + olen >= ERROR_MAX)
        olen = ERROR_MAX - 1 - plen;
    memmove(last_error + plen, last_error, olen);
    memcpy(last_error, tmp, plen);
    last_error[plen + olen] = '\0';
    return code;
}

/* Forget the calling thread's last error message. */
void deja__error_clear(void)
{
    last_error[0] = '\0';
}
