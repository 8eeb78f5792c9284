/*
 * cli/cmd_proxy.c -- `deja proxy`: record the traffic of an
 * OpenAI-compatible LLM server.
 */
#include "cli.h"
#include "cli_escape.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja proxy --upstream URL [--listen HOST:PORT] [--tag K=V]...\n"
    "                  [--redact-header NAME]... [--max-request BYTES]\n"
    "                  [--max-response BYTES] [--timeout SECONDS] [--max-clients N]\n"
    "\n"
    "A reverse proxy in front of an OpenAI-compatible server (vLLM, llama.cpp,\n"
    "Ollama, TGI, a hosted API, deja serve): point the application's base URL at\n"
    "it. Every POST to .../chat/completions, .../completions and .../embeddings is\n"
    "forwarded and recorded as a trace; everything else is forwarded unrecorded.\n"
    "Streams pass through chunk by chunk as they arrive. Prints its base URL\n"
    "(http://HOST:PORT/v1) on stdout, then serves until SIGINT or SIGTERM.\n"
    "\n"
    "Never recorded (but forwarded): Authorization, Proxy-Authorization, api-key,\n"
    "x-api-key, Cookie, Set-Cookie and every header named by --redact-header.\n"
    "\n"
    "  --upstream URL        the server, e.g. http://127.0.0.1:8000 (request paths\n"
    "                        are appended to it as they come)\n"
    "  --listen HOST:PORT    where to listen (default 127.0.0.1:8080; port 0: any)\n"
    "  --tag K=V             tag every trace (repeatable)\n"
    "  --redact-header NAME  never record this request header either (repeatable)\n"
    "  --max-request BYTES   larger request bodies get 413 (default 64M)\n"
    "  --max-response BYTES  larger answers get 502, streams are cut (default 256M)\n"
    "  --timeout SECONDS     the whole upstream exchange (default 600; 0: none);\n"
    "                        beyond it the client gets 504\n"
    "  --max-clients N       connections served at once (default 1024)\n"
    "\n"
    "Exit status: 0 after a signal, 2 when the store cannot be opened or the\n"
    "address cannot be listened on.\n";

/* `deja proxy`. */
int cmd_proxy(const cli_global *g, int argc, char **argv)
{
    enum {
        OPT_LISTEN = CLI_OPT_FIRST_FREE,
        OPT_UPSTREAM,
        OPT_REDACT,
        OPT_MAX_REQUEST,
        OPT_MAX_RESPONSE,
        OPT_TIMEOUT,
        OPT_MAX_CLIENTS,
    };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"tag", required_argument, NULL, CLI_OPT_TAG},
        {"redact-header", required_argument, NULL, OPT_REDACT},
        {"max-request", required_argument, NULL, OPT_MAX_REQUEST},
        {"max-response", required_argument, NULL, OPT_MAX_RESPONSE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
        CLI_LONGOPT_END,
    };
    deja_proxy_options o = DEJA_PROXY_OPTIONS_INIT;
    cli_filter tags; /* reuses the --tag parser */
    const char **redact = NULL;
    size_t nredact = 0;
    deja_tracer *tracer = NULL;
    deja_server *server = NULL;
    deja_server_stats st;
    deja_tracer_stats ts;
    uint64_t v = 0;
    sigset_t set;
    int first = 1, c, rc;
    int ret = CLI_EXIT_TROUBLE;

    cli_filter_init(&tags);
    o.listen = "127.0.0.1:8080";
    while ((c = cli_getopt(argc, argv, longopts, help, &first)) != -1) {
        switch (c) {
        case CLI_OPT_HELP:
            ret = cli_help(help);
            goto cleanup;
        case OPT_LISTEN:
            o.listen = optarg;
            break;
        case OPT_UPSTREAM:
            o.upstream = optarg;
            break;
        case CLI_OPT_TAG:
            if (cli_filter_option(&tags, c, optarg, 0) < 0)
                goto cleanup;
            break;
        case OPT_REDACT: {
            const char **grown = realloc(redact, (nredact + 1) * sizeof *redact);
            if (grown == NULL) {
                cli_error("out of memory");
                goto cleanup;
            }
            redact = grown;
            redact[nredact++] = optarg;
            break;
        }
        case OPT_MAX_REQUEST:
        case OPT_MAX_RESPONSE:
            if (cli_parse_size(optarg, &v) < 0 || v == 0 || v > SIZE_MAX) {
                cli_error("%s: expected a size such as 64M, not '%s'",
                          c == OPT_MAX_REQUEST ? "--max-request" : "--max-response", optarg);
                goto cleanup;
            }
            if (c == OPT_MAX_REQUEST)
                o.max_request = (size_t)v;
            else
                o.max_response = (size_t)v;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_u64(optarg, 4000000, &v) < 0) {
                cli_error("--timeout: expected whole seconds, not '%s'", optarg);
                goto cleanup;
            }
            o.timeout_ms = (unsigned)(v * 1000);
            break;
        case OPT_MAX_CLIENTS:
            if (cli_parse_u64(optarg, 65536, &v) < 0 || v == 0) {
                cli_error("--max-clients: expected 1..65536, not '%s'", optarg);
                goto cleanup;
            }
            o.max_clients = (unsigned)v;
            break;
        default:
            goto cleanup;
        }
    }
    if (optind < argc) {
        ret = cli_usage_error(help, "proxy: unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (o.upstream == NULL) {
        ret = cli_usage_error(help, "proxy: --upstream URL is required");
        goto cleanup;
    }
    if (strncmp(o.upstream, "http://", 7) != 0 && strncmp(o.upstream, "https://", 8) != 0) {
        cli_error("--upstream: expected an http:// or https:// URL, not '%s'", o.upstream);
        goto cleanup;
    }
    o.tags = tags.tags;
    o.ntags = tags.ntags;
    o.redact_headers = redact;
    o.nredact_headers = nredact;
    if (cli_listen_check(o.listen) < 0)
        goto cleanup;
    cli_signals_block(&set);
    rc = deja_tracer_open(&tracer, g->store, NULL);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    rc = deja_proxy_start(&server, tracer, &o);
    if (rc < 0) {
        cli_lib_error(rc, "proxy");
        goto cleanup;
    }
    char extra[1200];
    snprintf(extra, sizeof extra, " -> %.1000s, recording into %s", o.upstream, g->store);
    cli_print_listening("proxy", o.listen, deja_server_port(server), extra);
    cli_signals_wait(&set);
    deja_server_stats_get(server, &st);
    deja_server_stop(server);
    server = NULL;
    rc = deja_tracer_flush(tracer);
    deja_tracer_stats_get(tracer, &ts);
    fprintf(stderr, "deja proxy: %llu requests, %llu recorded (%llu truncated), %llu written\n",
            (unsigned long long)st.requests, (unsigned long long)st.recorded,
            (unsigned long long)st.truncated, (unsigned long long)ts.written);
    if (st.unrecorded > 0) {
        fprintf(stderr, "deja proxy: %llu answered but not recorded; the first because: ",
                (unsigned long long)st.unrecorded);
        cli_put_term(stderr, st.unrecorded_why);
        fputc('\n', stderr);
    }
    if (rc < 0) {
        cli_lib_error(rc, "store '%s': flushing traces", g->store);
        goto cleanup;
    }
    ret = CLI_EXIT_OK;
cleanup:
    deja_server_stop(server);
    deja_tracer_close(tracer);
    free(redact);
    cli_filter_free(&tags);
    return ret;
}
