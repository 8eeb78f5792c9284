/*
 * tests/problems_harness.h -- collect the lines a check reports (the
 * deja_problem_fn of deja_store_verify and friends) and look for one:
 *
 *   problems p = {0};
 *   deja_store_verify(store, problem_cb, &p);
 *   assert_true(has_line(&p, "ix_model", "malformed"));
 */
#ifndef DEJA_TESTS_PROBLEMS_HARNESS_H
#define DEJA_TESTS_PROBLEMS_HARNESS_H

#include <stdio.h>
#include <string.h>

/* The first 8 lines reported, and how many there were. */
typedef struct problems {
    char lines[8][512];
    int n;
} problems;

static inline void problem_cb(const char *line, void *payload)
{
    problems *p = payload;

    if (p->n < 8)
        snprintf(p->lines[p->n], sizeof p->lines[0], "%s", line);
    p->n++;
}

/* Whether one of the kept lines holds `a` and, unless NULL, `b`. */
static inline int has_line(const problems *p, const char *a, const char *b)
{
    for (int i = 0; i < p->n && i < 8; i++)
        if (strstr(p->lines[i], a) != NULL && (b == NULL || strstr(p->lines[i], b) != NULL))
            return 1;
    return 0;
}

#endif
