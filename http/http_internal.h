/*
 * http/http_internal.h -- what the files of the http/ room share.
 *
 * The http/ room holds deja's side of OpenAI-compatible HTTP: the recording
 * proxy (proxy.c), `deja serve` (serve.c), the endpoint model that replays
 * traces against a live server (endpoint.c), and what all three need to
 * read and write the protocol (openai.c) and to listen (listen.c). It calls
 * the public API (include/deja.h), store/store.h for the error setter, and
 * libmicrohttpd, libcurl and jansson; nothing calls into it but through
 * include/deja.h and the endpoint hook of replay/model.c.
 */
#ifndef DEJA_HTTP_HTTP_INTERNAL_H
#define DEJA_HTTP_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "deja.h"
#include "core/buf.h"
#include "deja_model.h"

/* Choices of one answer that are recorded (n > this keeps the first ones). */
#define DEJA__HTTP_MAX_CHOICES 16

/* The bytes of a buffer as characters ("" when empty); not NUL-terminated:
 * always used with b->size. */
static inline const char *deja__buf_chars(const deja__buf *b)
{
    return b->data ? (const char *)b->data : "";
}

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

/* Begin the trace of a request of operation `op` on `tracer`: a span of
 * the requested model (its version comes with the answer) holding the
 * whole body as the input "http.request", the messages or prompt as text
 * inputs, gen_ai.operation.name, the params under their OpenTelemetry GenAI
 * names and the seed. The body is parsed once; one that is not a JSON
 * object is still recorded whole. `*stream` is set to 1 when the request
 * asks for a stream. Returns 0 or the span's error (*out is then NULL). */
int deja__openai_begin(deja_span **out, deja_tracer *tracer, deja__op op, const char *body,
                       size_t len, int *stream);

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

/* Record the answer's attributes as params of `span`: gen_ai.response.id,
 * .model, .finish_reasons, gen_ai.usage.*, the system fingerprint. */
int deja__answer_record_params(const deja__answer *a, deja_span *span);

/* The one-line error text of a failed exchange: "HTTP 404: <message>". */
void deja__http_error_text(char *out, size_t cap, long status, const deja__answer *a);

/* Parse "HOST:PORT" (IPv4 or [IPv6] or a name that resolves) into `addr`.
 * Returns 0 or DEJA_EINVAL with a message naming `what`. */
int deja__listen_addr(const char *text, const char *what, struct sockaddr_storage *addr,
                      socklen_t *len);

/* Decode base64 (standard alphabet, padding optional) into a malloc'd
 * buffer. Returns 0, DEJA_EINVAL on a bad character, DEJA_ENOMEM. */
int deja__base64_decode(const char *text, size_t len, uint8_t **out, size_t *size);

#include "http/endpoint.h"

#endif /* DEJA_HTTP_HTTP_INTERNAL_H */
