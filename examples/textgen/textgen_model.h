/*
 * textgen_model.h -- the textgen model file, shared by the trainer
 * (textgen_train.c) and the plugin (textgen.c).
 *
 * A character-level n-gram model: for every context of 0..order bytes seen
 * in the corpus, how often each next byte followed it. All integers are
 * little-endian.
 *
 *   header   (32 bytes)
 *     0  char[8] magic "DJTXTGEN"
 *     8  u32     format version (TEXTGEN_FORMAT)
 *    12  u32     order, 1..TEXTGEN_MAX_ORDER
 *    16  u32     number of contexts
 *    20  u32     number of entries
 *    24  u64     corpus size in bytes
 *   contexts (12 bytes each), sorted by (len, key), strictly increasing
 *     0  u32     key: the context bytes packed big-endian (oldest byte highest)
 *     4  u32     index of its first entry
 *     8  u16     number of entries (>= 1)
 *    10  u8      len, 0..order
 *    11  u8      zero
 *   entries (5 bytes each), per context sorted by byte
 *     0  u8      next byte
 *     1  u32     count (>= 1)
 */
#ifndef TEXTGEN_MODEL_H
#define TEXTGEN_MODEL_H

#define TEXTGEN_MAGIC "DJTXTGEN"
#define TEXTGEN_FORMAT 1u
#define TEXTGEN_MAX_ORDER 4u
#define TEXTGEN_HEADER_SIZE 32u
#define TEXTGEN_CTX_SIZE 12u
#define TEXTGEN_ENTRY_SIZE 5u
/* Bounds the plugin checks before it believes a file. */
#define TEXTGEN_MAX_FILE ((size_t)64 << 20)
#define TEXTGEN_MAX_CONTEXTS (1u << 22)
#define TEXTGEN_MAX_ENTRIES (1u << 24)

#endif /* TEXTGEN_MODEL_H */
