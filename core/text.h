/*
 * core/text.h -- the one rule for text deja records and prints as names:
 * model names and versions, tag keys and values, tensor, param, seed and
 * RNG stream names, plugin specs. The tracer refuses what breaks it, a
 * bundle's reader refuses it too, so that whatever is recorded can be
 * exported and printed without moving a terminal's cursor.
 */
#ifndef DEJA_CORE_TEXT_H
#define DEJA_CORE_TEXT_H

/* What is wrong with `s` as a name ("" when nothing; NULL reads as ""):
 * at most DEJA__MAX_NAME bytes of valid UTF-8 without control characters
 * (C0, DEL, C1). The answer ("is too long", "holds a control character",
 * "is not valid UTF-8") names the problem, never repeats the text. */
const char *deja__text_problem(const char *s);

#endif /* DEJA_CORE_TEXT_H */
