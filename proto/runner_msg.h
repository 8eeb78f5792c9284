/*
 * proto/runner_msg.h -- the messages of the runner protocol (`exec:`
 * models, see deja.pb.RunnerMessage in proto/deja.proto): encoded into a
 * frame, decoded from one, checked. The generated types stay in proto/;
 * runner/ sees only the plain struct below.
 *
 * A frame is a 4-byte little-endian length, then that many bytes of one
 * RunnerMessage. Decoding treats the bytes as hostile: every size and
 * count is bounded and every tensor is checked against its shape before
 * anyone looks at it.
 */
#ifndef DEJA_PROTO_RUNNER_MSG_H
#define DEJA_PROTO_RUNNER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"
#include "core/buf.h"

/* The largest message either side accepts (the length prefix's bound). */
#define DEJA__RUNNER_MAX_FRAME ((size_t)256 << 20)
/* The most RNG draws one call may ask for. */
#define DEJA__RUNNER_MAX_DRAWS 65536u
/* The most tensors or params in one message. */
#define DEJA__RUNNER_MAX_ITEMS 65536u
/* Bytes of the length prefix. */
#define DEJA__RUNNER_PREFIX 4

typedef enum deja__rmsg_kind {
    DEJA__RMSG_NONE = 0,
    DEJA__RMSG_HELLO = 1,  /* runner -> host */
    DEJA__RMSG_INFER = 2,  /* host -> runner */
    DEJA__RMSG_CALL = 3,   /* runner -> host */
    DEJA__RMSG_REPLY = 4,  /* host -> runner */
    DEJA__RMSG_RESULT = 5, /* runner -> host */
} deja__rmsg_kind;

typedef enum deja__rcall {
    DEJA__RCALL_SEED = 1,
    DEJA__RCALL_RNG = 2,
    DEJA__RCALL_NOW = 3,
    DEJA__RCALL_NOTE = 4,
    DEJA__RCALL_CHECKPOINT = 5, /* the tensor is tensors[0] */
} deja__rcall;

/* One message, as views. Which fields count depends on `kind`; the others
 * are zero. A decoded message owns everything it points to. */
typedef struct deja__rmsg {
    deja__rmsg_kind kind;
    /* HELLO */
    uint32_t protocol;
    const char *name;
    const char *version;
    const uint8_t *digest;
    size_t digest_size;
    int thread_safe;
    const deja_kv *libs;
    size_t nlibs;
    /* HELLO (load failed), REPLY (call refused), RESULT (inference failed);
     * "" when none, never NULL once decoded */
    const char *error;
    /* INFER */
    uint64_t seq;
    int checkpoints; /* the host wants the inference's checkpoints */
    const deja_param *params;
    size_t nparams;
    /* INFER: the inputs; RESULT: the outputs; CALL CHECKPOINT: the one
     * checkpoint */
    const deja_tensor *tensors;
    size_t ntensors;
    /* CALL */
    deja__rcall call;
    const char *call_name;
    uint32_t count;
    /* REPLY */
    const uint64_t *values;
    size_t nvalues;
    int64_t now_ns;
    int stop; /* REPLY to a CHECKPOINT: stop the inference */
    /* RESULT: 1 for STATUS_OK */
    int ok;
} deja__rmsg;

/* Append the frame of `m` (prefix and message) to `out`. Returns 0,
 * DEJA_EINVAL (a tensor inconsistent with its shape, an unknown kind, a
 * message beyond DEJA__RUNNER_MAX_FRAME; the message names it) or
 * DEJA_ENOMEM. */
int deja__rmsg_encode(const deja__rmsg *m, deja__buf *out);

/* The length held by a 4-byte prefix. */
uint32_t deja__rmsg_prefix(const uint8_t prefix[DEJA__RUNNER_PREFIX]);

/* Decode the `size` bytes of one message (without its prefix) into a new
 * message at `*out`, freed with deja__rmsg_free(). Returns 0,
 * DEJA_ECORRUPT with a message naming what is wrong ("not a
 * RunnerMessage", "output 'logits': shape [2,3] holds 24 bytes of f32 but
 * the payload is 20"), or DEJA_ENOMEM. */
int deja__rmsg_decode(const void *data, size_t size, deja__rmsg **out);

/* Free a decoded message. Accepts NULL. */
void deja__rmsg_free(deja__rmsg *m);

/* Name of a kind ("hello", "infer", ...), "unknown" when out of range. */
const char *deja__rmsg_kind_name(deja__rmsg_kind kind);

#endif /* DEJA_PROTO_RUNNER_MSG_H */
