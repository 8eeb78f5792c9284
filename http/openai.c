/*
 * http/openai.c -- recording the OpenAI-compatible protocol: requests into
 * spans (inputs and params under the OpenTelemetry GenAI names), and the
 * attributes of an answer (read by runner/openai.c) into params.
 *
 * Everything here parses network input: sizes are bounded by the callers
 * (the body limits), jansson validates UTF-8, and a part that does not
 * parse is skipped and flagged rather than trusted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http/http_internal.h"
#include "core/core.h"


/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

/* The text of a message's content: a string, or the "text" of each part of
 * an array of parts, concatenated. Non-text parts stay in http.request
 * only. */
static int content_text(json_t *content, deja__buf *out)
{
    int rc = 0;
    if (json_is_string(content)) {
        return deja__buf_append(out, json_string_value(content), json_string_length(content));
    }
    if (json_is_array(content)) {
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            json_t *text = json_object_get(part, "text");
            if (json_is_string(text)) {
                rc = deja__buf_append(out, json_string_value(text), json_string_length(text));
                if (rc != 0) {
                    return rc;
                }
            }
        }
    }
    return deja__buf_append(out, "", 0);
}

/* Record a numeric field of the request under `key`, when it is a number. */
static int param_number(deja_span *span, json_t *req, const char *field, const char *key)
{
    json_t *v = json_object_get(req, field);
    if (json_is_number(v)) {
        return deja_span_param_num(span, key, json_number_value(v));
    }
    return 0;
}

/* Record a field that is a string or an array of strings under `key`, as a
 * JSON array ("[\"\\n\"]"): OpenTelemetry's string[] attributes. */
static int param_strings(deja_span *span, json_t *req, const char *field, const char *key)
{
    json_t *v = json_object_get(req, field);
    json_t *arr = NULL;
    char *text = NULL;
    int rc = 0;
    if (json_is_string(v)) {
        arr = json_pack("[O]", v);
    } else if (json_is_array(v)) {
        arr = json_incref(v);
    } else {
        return 0;
    }
    text = arr ? json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (!text) {
        rc = deja__error_set(DEJA_ENOMEM, "http: out of memory");
    } else {
        rc = deja_span_param_str(span, key, text);
    }
    free(text);
    json_decref(arr);
    return rc;
}

/* Record each string of `v` (a string or an array of strings) as a text
 * input `name`, `name.1`, ... */
static int inputs_strings(deja_span *span, json_t *v, const char *name)
{
    int rc = 0;
    if (json_is_string(v)) {
        return deja_span_add_text(span, DEJA_INPUT, name, json_string_value(v),
                                  json_string_length(v));
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            char nm[64];
            if (!json_is_string(item)) {
                continue; /* token arrays stay in http.request */
            }
            if (i == 0) {
                snprintf(nm, sizeof nm, "%s", name);
            } else {
                snprintf(nm, sizeof nm, "%s.%zu", name, i);
            }
            rc = deja_span_add_text(span, DEJA_INPUT, nm, json_string_value(item),
                                    json_string_length(item));
            if (rc != 0) {
                return rc;
            }
        }
    }
    return rc;
}

/* Record the messages of a chat request: the last user message as
 * "prompt" (what `deja ls` previews), then each message as
 * "message.<i>.<role>". */
static int inputs_messages(deja_span *span, json_t *messages)
{
    int rc = 0;
    size_t i, last_user = (size_t)-1;
    json_t *m;
    deja__buf text = {0};
    if (!json_is_array(messages)) {
        return 0;
    }
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0) {
            last_user = i;
        }
    }
    if (last_user != (size_t)-1) {
        rc = content_text(json_object_get(json_array_get(messages, last_user), "content"), &text);
        if (rc == 0) {
            rc = deja_span_add_text(span, DEJA_INPUT, "prompt", deja__buf_chars(&text), text.size);
        }
    }
    json_array_foreach(messages, i, m)
    {
        char nm[96];
        const char *role = json_string_value(json_object_get(m, "role"));
        if (rc != 0) {
            break;
        }
        text.size = 0;
        rc = content_text(json_object_get(m, "content"), &text);
        if (rc != 0) {
            break;
        }
        snprintf(nm, sizeof nm, "message.%zu.%.40s", i, role ? role : "unknown");
        rc = deja_span_add_text(span, DEJA_INPUT, nm, deja__buf_chars(&text), text.size);
    }
    deja__buf_free(&text);
    return rc;
}

/* Record the request `body`, parsed as `req` (NULL when it is not JSON). */
static int record_request(deja_span *span, deja__op op, const char *body, size_t len, json_t *req,
                          int *stream)
{
    int rc = 0;
    *stream = 0;
    if (!json_is_object(req)) {
        return deja_span_add_bytes(span, DEJA_INPUT, "http.request", body, len);
    }
    *stream = json_is_true(json_object_get(req, "stream"));
    if (op == DEJA__OP_CHAT) {
        rc = inputs_messages(span, json_object_get(req, "messages"));
    } else if (op == DEJA__OP_COMPLETION) {
        rc = inputs_strings(span, json_object_get(req, "prompt"), "prompt");
    } else if (op == DEJA__OP_EMBEDDINGS) {
        rc = inputs_strings(span, json_object_get(req, "input"), "input");
    }
    if (rc == 0) {
        rc = deja_span_add_text(span, DEJA_INPUT, "http.request", body, len);
    }
    const char *model = json_string_value(json_object_get(req, "model"));
    if (rc == 0 && model) {
        rc = deja_span_param_str(span, "gen_ai.request.model", model);
    }
    if (rc == 0) {
        rc = param_number(span, req, "temperature", "gen_ai.request.temperature");
    }
    if (rc == 0) {
        rc = param_number(span, req, "top_p", "gen_ai.request.top_p");
    }
    if (rc == 0) {
        rc = param_number(span, req, "top_k", "gen_ai.request.top_k");
    }
    if (rc == 0) {
        rc = param_number(span, req, "max_tokens", "gen_ai.request.max_tokens");
    }
    if (rc == 0 && !json_object_get(req, "max_tokens")) {
        rc = param_number(span, req, "max_completion_tokens", "gen_ai.request.max_tokens");
    }
    if (rc == 0) {
        rc = param_number(span, req, "frequency_penalty", "gen_ai.request.frequency_penalty");
    }
    if (rc == 0) {
        rc = param_number(span, req, "presence_penalty", "gen_ai.request.presence_penalty");
    }
    if (rc == 0) {
        rc = param_number(span, req, "n", "gen_ai.request.choice.count");
    }
    if (rc == 0) {
        rc = param_number(span, req, "seed", "gen_ai.request.seed");
    }
    if (rc == 0) {
        rc = param_strings(span, req, "stop", "gen_ai.request.stop_sequences");
    }
    if (rc == 0) {
        rc = param_strings(span, req, "encoding_format", "gen_ai.request.encoding_formats");
    }
    if (rc == 0 && json_object_get(req, "stream")) {
        rc = deja_span_param_bool(span, "deja.request.stream", *stream);
    }
    json_t *seed = json_object_get(req, "seed");
    if (rc == 0 && json_is_integer(seed) && json_integer_value(seed) >= 0) {
        rc = deja_span_seed(span, "seed", (uint64_t)json_integer_value(seed));
    }
    return rc;
}

int deja__openai_begin(deja_span **out, deja_tracer *tracer, deja__op op, const char *body,
                       size_t len, int *stream)
{
    json_error_t jerr;
    json_t *req = json_loadb(body, len, 0, &jerr);
    const char *model = json_string_value(json_object_get(req, "model"));
    int rc = deja_span_begin(out, tracer, model && *model ? model : "unknown", "");
    if (rc == 0) {
        rc = record_request(*out, op, body, len, req, stream);
    }
    if (rc == 0) {
        rc = deja_span_param_str(*out, "gen_ai.operation.name", deja__op_name(op));
    }
    if (rc != 0 && *out) {
        deja_span_abort(*out);
        *out = NULL;
    }
    json_decref(req);
    return rc;
}


int deja__answer_record_params(const deja__answer *a, deja_span *span)
{
    int rc = 0;
    if (a->id) {
        rc = deja_span_param_str(span, "gen_ai.response.id", a->id);
    }
    if (rc == 0 && a->model) {
        rc = deja_span_param_str(span, "gen_ai.response.model", a->model);
    }
    if (rc == 0 && a->fingerprint) {
        rc = deja_span_param_str(span, "gen_ai.openai.response.system_fingerprint", a->fingerprint);
    }
    if (rc == 0 && a->input_tokens >= 0) {
        rc = deja_span_param_num(span, "gen_ai.usage.input_tokens", (double)a->input_tokens);
    }
    if (rc == 0 && a->output_tokens >= 0) {
        rc = deja_span_param_num(span, "gen_ai.usage.output_tokens", (double)a->output_tokens);
    }
    if (rc == 0 && a->nchoices > 0) {
        json_t *arr = json_array();
        char *text = NULL;
        for (size_t i = 0; arr && i < a->nchoices; i++) {
            json_array_append_new(arr, json_string(a->finish[i] ? a->finish[i] : ""));
        }
        text = arr ? json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        rc = text ? deja_span_param_str(span, "gen_ai.response.finish_reasons", text)
                  : deja__error_set(DEJA_ENOMEM, "http: out of memory");
        free(text);
        json_decref(arr);
    }
    return rc;
}
