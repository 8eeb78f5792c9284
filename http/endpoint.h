/*
 * http/endpoint.h -- the http room's interface to replay/: the endpoint
 * model, a model outside the process reached over the OpenAI-compatible
 * protocol. replay/model.c loads it for specs starting with http:// or
 * https://; the rest of the library sees an ordinary deja_model.
 */
#ifndef DEJA_HTTP_ENDPOINT_H
#define DEJA_HTTP_ENDPOINT_H

#include "deja_model.h"

/* Open the endpoint model of `spec`, "http://HOST:PORT/PATH[?model=NAME&
 * timeout=SECONDS]" (PATH: the base URL an OpenAI client takes, e.g. /v1).
 * Each request may take `timeout_ms` (deja_model_options; 0: the default,
 * DEJA_MODEL_TIMEOUT_MS) unless the spec's timeout= says otherwise.
 * Fills `*plugin` with a description owned by `*instance` (valid until the
 * plugin's close), and `info` with a digest of the spec. Without NAME the
 * server must list exactly one model at GET PATH/models. Returns 0,
 * DEJA_EINVAL (a bad spec) or DEJA_EMODEL (the server cannot be asked). */
int deja__endpoint_open(const char *spec, unsigned timeout_ms, const deja_model_plugin **plugin,
                        void **instance, deja_model_info *info);

#endif /* DEJA_HTTP_ENDPOINT_H */
