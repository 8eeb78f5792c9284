/*
 * runner/openai.h -- the runner room's interface for the client side of the
 * OpenAI-compatible protocol (runner/openai.c): operations and answers.
 * The endpoint model (runner/endpoint.c) uses it, and so does http/'s
 * recording proxy, which reads its upstream's answers the same way.
 */
#ifndef DEJA_RUNNER_OPENAI_H
#define DEJA_RUNNER_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"
#include "core/buf.h"

/* The bytes of a buffer as characters ("" when empty); not NUL-terminated:
 * always used with b->size. */
static inline const char *deja__buf_chars(const deja__buf *b)
{
    return b->data ? (const char *)b->data : "";
}

/* Choices of one answer that are recorded (n > this keeps the first ones). */
#define DEJA__HTTP_MAX_CHOICES 16

/* Which OpenAI-compatible operation a request path names. */
typedef enum deja__op {
    DEJA__OP_NONE = 0,
    DEJA__OP_CHAT,       /* POST .../chat/completions */
    DEJA__OP_COMPLETION, /* POST .../completions */
    DEJA__OP_EMBEDDINGS, /* POST .../embeddings */
} deja__op;

/* The operation of `path` (query excluded by the caller), by its last
 * segments: "/v1/chat/completions" is DEJA__OP_CHAT. */
deja__op deja__op_of_path(const char *path);

/* The OpenTelemetry gen_ai.operation.name of `op` ("chat",
 * "text_completion", "embeddings"), or NULL. */
const char *deja__op_name(deja__op op);

/* The operation named by an OpenTelemetry operation name, or NONE. */
deja__op deja__op_of_name(const char *name);

/* The path suffix of `op` after the base URL ("/chat/completions"). */
const char *deja__op_path(deja__op op);

/* The answer of one exchange, parsed from a JSON body or an SSE stream. */
typedef struct deja__answer {
    deja__buf text[DEJA__HTTP_MAX_CHOICES];
    char *finish[DEJA__HTTP_MAX_CHOICES];
    size_t nchoices;
    char *tool_calls; /* JSON of choice 0's tool calls: [{type, function: {name, arguments}}] */
    void *tool_acc;   /* stream: those calls so far (a jansson array) */
    char *id;
    char *model;
    char *fingerprint;
    int64_t input_tokens; /* -1 when not reported */
    int64_t output_tokens;
    float *embedding; /* [nvec, dim] */
    size_t nvec, dim;
    char *error;            /* the message of an {"error": ...} body */
    size_t first_token_end; /* stream: byte offset just past the first event with text; 0 none */
    int done;               /* stream: "data: [DONE]" seen */
    int malformed;          /* some part did not parse */
} deja__answer;

void deja__answer_init(deja__answer *a);
void deja__answer_free(deja__answer *a);

/* Parse a whole JSON answer, or an SSE stream (`sse` non-zero), of `op`.
 * Malformed parts set a->malformed and are skipped. Returns 0 or
 * DEJA_ENOMEM. */
int deja__answer_parse(deja__answer *a, deja__op op, const char *body, size_t len, int sse);

/* Called for each output tensor of an answer. */
typedef int (*deja__tensor_fn)(const deja_tensor *t, void *payload);

/* Hand the answer's outputs to `fn`, in a fixed order: "completion" and
 * "finish_reason" (".N" appended for choice N > 0), "tool_calls" when
 * present, "embedding" (f32 [n, dim]) for embeddings. Returns 0 or what
 * `fn` returned. */
int deja__answer_outputs(const deja__answer *a, deja__tensor_fn fn, void *payload);

/* The one-line error text of a failed exchange: "HTTP 404: <message>". */
void deja__http_error_text(char *out, size_t cap, long status, const deja__answer *a);

/* Decode base64 (standard alphabet, padding optional) into a malloc'd
 * buffer. Returns 0, DEJA_EINVAL on a bad character, DEJA_ENOMEM. */
int deja__base64_decode(const char *text, size_t len, uint8_t **out, size_t *size);

#endif /* DEJA_RUNNER_OPENAI_H */
