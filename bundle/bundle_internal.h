/*
 * bundle/bundle_internal.h -- what bundle/bundle.c shows to its tests and
 * its fuzz target, and nobody else.
 *
 * Room bundle/: bundles (export, import, open in place), the one room that
 * reads files from strangers. It calls core/, proto/, store/ (through
 * store/store.h) and model loading through the public API; cli/ calls it
 * through include/deja.h.
 */
#ifndef DEJA_BUNDLE_BUNDLE_INTERNAL_H
#define DEJA_BUNDLE_BUNDLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"
#include "proto/codec.h"

/* Bounds a bundle must keep (see deja.h, section 6). */
#define DEJA__BUNDLE_FORMAT 1
#define DEJA__BUNDLE_HEADER 48
#define DEJA__BUNDLE_MAX_BODY ((uint64_t)4 << 30)  /* decompressed bytes */
#define DEJA__BUNDLE_MAX_RATIO 1000                /* decompressed / compressed */
#define DEJA__BUNDLE_RATIO_SLACK ((uint64_t)1 << 20)
#define DEJA__BUNDLE_MAX_RECORDS ((size_t)1 << 21)
#define DEJA__BUNDLE_MAX_PLUGIN ((uint64_t)256 << 20)

/* Record kinds: [u8 kind][u32 length][content]. A pad record holds
 * incompressible filler that keeps a very compressible bundle under the
 * ratio bound; readers skip it. */
enum {
    DEJA__BUNDLE_MANIFEST = 1,
    DEJA__BUNDLE_ENV = 2,
    DEJA__BUNDLE_BLOB = 3,
    DEJA__BUNDLE_TRACE = 4,
    DEJA__BUNDLE_PAD = 5,
};

/* Bodies up to this many decompressed bytes are held in memory; larger ones
 * in an unlinked temporary file mapped read-only. Tests lower it to cover
 * the file path. */
extern uint64_t deja__bundle_mem_max;

/* Verify the `size` bytes at `data` as a whole bundle file, exactly as
 * deja_bundle_verify() does for a file, naming it `name` in messages.
 * Returns 0 or the code of the first problem (message set). The fuzz
 * target's entry point. */
int deja__bundle_check_memory(const void *data, size_t size, const char *name);

/* Wrap `size` bytes of records (a decompressed body) as a bundle file in
 * `out`: header, one zstd frame, correct checksum. For tests and the fuzz
 * target, which must get hostile bodies past the checksum. */
int deja__bundle_wrap(const void *body, size_t size, deja__buf *out);

/* bundle/bundle_temp.c: the temporary stores of bundles opened in place
 * (made after removing those of dead processes; registered for
 * deja_bundle_remove_temp). */
int deja__bundle_temp_make(char *out, size_t cap);
void deja__bundle_temp_remove(const char *dir);

#endif /* DEJA_BUNDLE_BUNDLE_INTERNAL_H */
