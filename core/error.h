/*
 * core/error.h -- the per-thread last error every room sets.
 *
 * Public functions return a negative DEJA_E* code and leave a one-line
 * message that deja_error_last() returns (include/deja.h); these are the
 * setters the library uses internally.
 */
#ifndef DEJA_CORE_ERROR_H
#define DEJA_CORE_ERROR_H

/* Set the calling thread's last error to the formatted message and return
 * `code`, so that failures read `return deja__error_set(DEJA_EIO, ...)`. */
int deja__error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the calling thread's last error with a formatted context
 * ("trace 01J8...: ") and return `code` unchanged. */
int deja__error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the calling thread's last error message. */
void deja__error_clear(void);

#endif /* DEJA_CORE_ERROR_H */
