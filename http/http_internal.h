/*
 * http/http_internal.h -- what the files of the http/ room share.
 *
 * The http/ room holds deja's server side of OpenAI-compatible HTTP: the
 * recording proxy (proxy.c), `deja serve` (serve.c), recording requests
 * into spans (openai.c) and listening (listen.c). It calls down into the
 * public API (include/deja.h), core/ for errors and buffers, runner/'s
 * protocol reader (runner/openai.h: the proxy reads its upstream's answers
 * as the endpoint model reads its server's), libmicrohttpd, libcurl and
 * jansson. Nothing in the library calls into it: the CLI reaches it
 * through include/deja.h.
 */
#ifndef DEJA_HTTP_HTTP_INTERNAL_H
#define DEJA_HTTP_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "deja.h"
#include "core/buf.h"
#include "deja_model.h"
#include "runner/openai.h"

/* Begin the trace of a request of operation `op` on `tracer`: a span of
 * the requested model (its version comes with the answer) holding the
 * whole body as the input "http.request", the messages or prompt as text
 * inputs, gen_ai.operation.name, the params under their OpenTelemetry GenAI
 * names and the seed. The body is parsed once; one that is not a JSON
 * object is still recorded whole. `*stream` is set to 1 when the request
 * asks for a stream. Returns 0 or the span's error (*out is then NULL). */
int deja__openai_begin(deja_span **out, deja_tracer *tracer, deja__op op, const char *body,
                       size_t len, int *stream);

/* Record the answer's attributes as params of `span`: gen_ai.response.id,
 * .model, .finish_reasons, gen_ai.usage.*, the system fingerprint. */
int deja__answer_record_params(const deja__answer *a, deja_span *span);

/* Parse "HOST:PORT" (IPv4 or [IPv6] or a name that resolves) into `addr`.
 * Returns 0 or DEJA_EINVAL with a message naming `what`. */
int deja__listen_addr(const char *text, const char *what, struct sockaddr_storage *addr,
                      socklen_t *len);

#endif /* DEJA_HTTP_HTTP_INTERNAL_H */
