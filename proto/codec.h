/*
 * proto/codec.h -- encode and decode deja's records. The only door to the
 * generated protobuf-c code: nothing outside proto/ includes deja.pb-c.h.
 *
 * Encoding takes the public structs (deja_trace, deja_env) and writes
 * protobuf bytes; decoding gives back a deja_trace (or deja_env) that owns
 * everything it points to and is freed with deja_trace_free()
 * (deja_env_free()). Every size read from the bytes is bounded before use.
 *
 * Room proto/: the schema (deja.proto), its codec and deja's stream
 * generator. It calls core/ only; every room above may call it.
 */
#ifndef DEJA_PROTO_CODEC_H
#define DEJA_PROTO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "deja.h"

/* Called by the encoder for a tensor payload larger than `inline_max`: store
 * it (or find it stored) and write its digest into `out`. */
typedef int (*deja__blob_put_fn)(const void *data, size_t size, deja_digest *out, void *payload);

/* Encode `trace` into `out` (replacing its content). Tensors larger than
 * `inline_max` go through `put` and are referenced by digest; with `put`
 * NULL every payload is inline. */
int deja__trace_encode(const deja_trace *trace, size_t inline_max, deja__blob_put_fn put,
                       void *payload, deja__buf *out);

/* Decode a Trace record (proto/trace_decode.c) into one allocation that
 * holds the trace, a copy of the record its strings and payloads point
 * into, and every array. Tensors stored as blobs come back with data NULL
 * (see deja__trace_blob and deja__trace_attach). Returns DEJA_ECORRUPT with
 * a message naming the problem on malformed input, or DEJA_ENOMEM. */
int deja__trace_decode(const void *data, size_t size, deja_trace **out);

/* Check that the shape of tensor `name` agrees with its dtype and payload
 * size (fixed-size dtypes: product(shape) * element size == size, without
 * overflow; bytes and utf8 are free-form). Returns 0, or `code` with a
 * message starting with `what` and naming the tensor. */
int deja__tensor_shape_check(int code, const char *what, const char *name, deja_dtype dtype,
                             const uint64_t *shape, size_t ndim, uint64_t size);

/* A trace's summary (proto/peek.c): `t` shows the id, start, duration,
 * model name and version, environment, status, tags, output kinds, and
 * every tensor's name, dtype and size (data NULL, no shape) with its blob
 * digest (deja__peek_blob); nothing else is read. The
 * scratch buffers are reused from one record to the next: zero-initialise,
 * release with deja__peek_free(). `t` is valid until the next peek. */
typedef struct deja__peek {
    deja_trace t;
    char *text; /* NUL-terminated copies of the strings */
    size_t text_cap, text_used;
    deja_tensor *tensors;
    size_t ntensors, cap_tensors;
    uint8_t *sides; /* per tensor: 0 input, 1 output */
    size_t cap_sides;
    const uint8_t **blobs; /* per tensor: its 16-byte blob digest in the record, or NULL */
    size_t cap_blobs;
    deja_tag *tags;
    size_t ntags, cap_tags;
    deja_output_decl *kinds;
    size_t nkinds, cap_kinds;
} deja__peek;

/* Read the summary of the Trace record in `data` into `pk->t`. Returns 0,
 * DEJA_ECORRUPT on malformed bytes, or DEJA_ENOMEM. */
int deja__trace_peek(const void *data, size_t size, deja__peek *pk);
/* The blob digest (16 bytes, pointing into the peeked record) of input or
 * output `index` of the last peek, or NULL when that tensor is inline. */
const uint8_t *deja__peek_blob(const deja__peek *pk, deja_side side, size_t index);
void deja__peek_free(deja__peek *pk);

/* The blob digest of input (side DEJA_INPUT) or output tensor `index`, or
 * NULL when that tensor is inline. */
const deja_digest *deja__trace_blob(const deja_trace *trace, deja_side side, size_t index);

/* Hand a blob payload (malloc'd, `size` bytes) to the trace, which owns it
 * from now on and shows it as the tensor's data. Returns 0, or
 * DEJA_ECORRUPT (payload freed) when `size` is not the tensor's size. */
int deja__trace_attach(deja_trace *trace, deja_side side, size_t index, void *data, size_t size);

/* Encode an environment canonically: the same environment always gives the
 * same bytes, so its XXH3-128 is its key. */
int deja__env_encode(const deja_env *env, deja__buf *out);
int deja__env_decode(const void *data, size_t size, deja_env **out);

/* Encode the manifest of a bundle (deja.pb.BundleManifest) from `info`:
 * format, deja_version, created_ns, the counts, models and plugin (with its
 * data when not NULL). file_bytes, body_bytes and checksum belong to the
 * file, not the manifest, and are not encoded. */
int deja__manifest_encode(const deja_bundle_info *info, deja__buf *out);

/* Decode a manifest into a new deja_bundle_info that owns everything it
 * points to, freed with deja__manifest_free(). file_bytes, body_bytes and
 * checksum are left 0 for the caller. Returns 0, DEJA_ECORRUPT (message
 * names the field) or DEJA_ENOMEM. */
int deja__manifest_decode(const void *data, size_t size, deja_bundle_info **out);
void deja__manifest_free(deja_bundle_info *info);

/* deja's stream generator (proto/rng.c), part of the record format. */
typedef struct deja__xoshiro {
    uint64_t s[4];
} deja__xoshiro;

uint64_t deja__splitmix64(uint64_t *state);
void deja__xoshiro_seed(deja__xoshiro *g, uint64_t seed);
uint64_t deja__xoshiro_next(deja__xoshiro *g);
int deja__rng_is_generated(uint64_t seed, const uint64_t *draws, size_t n);
void deja__rng_generate(uint64_t seed, uint64_t *out, size_t n);

#endif /* DEJA_PROTO_CODEC_H */
