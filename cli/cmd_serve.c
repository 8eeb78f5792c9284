/*
 * cli/cmd_serve.c -- `deja serve`: a model as an OpenAI-compatible endpoint.
 */
#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: deja serve --model PLUGIN[:ARG] [--listen HOST:PORT] [--record]\n"
    "                  [--max-request BYTES] [--max-clients N]\n"
    "\n"
    "Serve a deja model over the OpenAI-compatible protocol: GET /v1/models,\n"
    "POST /v1/chat/completions and POST /v1/completions, streaming or not. The\n"
    "chat messages' contents (joined by newlines) or the prompt become the input\n"
    "'prompt'; temperature, top_p, top_k, max_tokens and stop become params; the\n"
    "request's seed becomes the determinism context's base seed (same seed, same\n"
    "completion). Prints the base URL (http://HOST:PORT/v1) on stdout, then serves\n"
    "until SIGINT or SIGTERM.\n"
    "\n"
    "  --model PLUGIN[:ARG]  the model (a path or a bare name such as textgen-v1)\n"
    "  --listen HOST:PORT    where to listen (default 127.0.0.1:8000; port 0: any)\n"
    "  --record              record every inference into the store (replayable on\n"
    "                        the plugin with `deja replay --model`)\n"
    "  --max-request BYTES   larger request bodies get 413 (default 16M)\n"
    "  --max-clients N       connections served at once (default 1024)\n"
    "\n"
    "Exit status: 0 after a signal, 2 when the model cannot load or the address\n"
    "cannot be listened on.\n";

/* `deja serve`. */
int cmd_serve(const cli_global *g, int argc, char **argv)
{
    enum { OPT_LISTEN = CLI_OPT_FIRST_FREE, OPT_RECORD, OPT_MAX_REQUEST, OPT_MAX_CLIENTS };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        {"model", required_argument, NULL, CLI_OPT_MODEL},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"record", no_argument, NULL, OPT_RECORD},
        {"max-request", required_argument, NULL, OPT_MAX_REQUEST},
        {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
        CLI_LONGOPT_END,
    };
    deja_serve_options o = DEJA_SERVE_OPTIONS_INIT;
    deja_tracer *tracer = NULL;
    deja_server *server = NULL;
    deja_server_stats st;
    uint64_t v = 0;
    sigset_t set;
    int record = 0, first = 1, c, rc;
    int ret = CLI_EXIT_TROUBLE;

    o.listen = "127.0.0.1:8000";
    while ((c = cli_getopt(argc, argv, longopts, help, &first)) != -1) {
        switch (c) {
        case CLI_OPT_HELP:
            return cli_help(help);
        case CLI_OPT_MODEL:
            o.model = optarg;
            break;
        case OPT_LISTEN:
            o.listen = optarg;
            break;
        case OPT_RECORD:
            record = 1;
            break;
        case OPT_MAX_REQUEST:
            if (cli_parse_size(optarg, &v) < 0 || v == 0 || v > SIZE_MAX)
                return cli_error("--max-request: expected a size such as 16M, not '%s'", optarg);
            o.max_request = (size_t)v;
            break;
        case OPT_MAX_CLIENTS:
            if (cli_parse_u64(optarg, 65536, &v) < 0 || v == 0)
                return cli_error("--max-clients: expected 1..65536, not '%s'", optarg);
            o.max_clients = (unsigned)v;
            break;
        default:
            return CLI_EXIT_TROUBLE;
        }
    }
    if (optind < argc)
        return cli_usage_error(help, "serve: unexpected argument '%s'", argv[optind]);
    if (o.model == NULL)
        return cli_usage_error(help, "serve: --model PLUGIN is required");
    if (cli_listen_check(o.listen) < 0)
        goto cleanup;
    cli_signals_block(&set);
    if (record) {
        rc = deja_tracer_open(&tracer, g->store, NULL);
        if (rc < 0) {
            cli_lib_error(rc, "store '%s'", g->store);
            goto cleanup;
        }
        o.record = tracer;
    }
    rc = deja_serve_start(&server, &o);
    if (rc < 0) {
        cli_lib_error(rc, "serve");
        goto cleanup;
    }
    cli_print_listening("serve", o.listen, deja_server_port(server), record ? ", recording" : "");
    cli_signals_wait(&set);
    deja_server_stats_get(server, &st);
    deja_server_stop(server);
    server = NULL;
    fprintf(stderr, "deja serve: %llu requests answered, %llu recorded\n",
            (unsigned long long)st.requests, (unsigned long long)st.recorded);
    ret = CLI_EXIT_OK;
cleanup:
    deja_server_stop(server);
    deja_tracer_close(tracer);
    return ret;
}
