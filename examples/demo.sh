#!/usr/bin/env bash
# examples/demo.sh BUILD_DIR -- a walkthrough of deja on the textgen example:
# record 1000 inferences, find them, look at one, check the store, and record
# from an instrumented program too. Every command is echoed before it runs.
#
#   ./run demo               (builds, then runs this with BUILD_DIR=build)
#   examples/demo.sh build
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: examples/demo.sh BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
EXAMPLES=$(cd "$(dirname "$0")" && pwd)
DEJA_BIN="$BUILD/bin/deja"
[ -x "$DEJA_BIN" ] || { echo "demo: $DEJA_BIN is not built" >&2; exit 2; }

export DEJA_STORE="$BUILD/demo.store"
export DEJA_PLUGIN_PATH="$BUILD/lib"
WORK="$BUILD/demo"
rm -rf "$DEJA_STORE" "$WORK"
mkdir -p "$WORK"

# The commands run as typed: `deja` and `instrumented` are the built binaries.
deja() { "$DEJA_BIN" "$@"; }
instrumented() { "$BUILD/bin/instrumented" "$@"; }

# step "comment" command...: print the comment and "$ command", then run it.
step() {
    local comment=$1; shift
    printf '\n# %s\n$ %s\n' "$comment" "$*"
    eval "$@"
}

echo "deja demo: store $DEJA_STORE (DEJA_STORE), plugins in $DEJA_PLUGIN_PATH"

# 40 openings x 5 temperatures x 5 seeds = 1000 requests, always the same.
cd "$WORK"
REQUESTS=requests.jsonl
awk 'BEGIN {
    n = split("Once upon a time|The king|In the morning|She said|The old man|" \
              "It was a dark night|When the sun rose|He looked at|The door opened|" \
              "Long ago|The children|At the river|A little bird|The queen was|" \
              "Nobody knew|In the forest|The wind|They walked|On the hill|" \
              "The fisherman|There was once|Her mother|The wolf|All day long|" \
              "The village|Down by the sea|His brother|The princess|Early one morning|" \
              "The giant|Under the bridge|The miller|Three sisters|The cat sat|" \
              "In a far country|The soldier|At midnight|The baker|The road was|" \
              "Once more", prompts, "|")
    split("0.2 0.5 0.8 1.0 1.3", temps, " ")
    id = 0
    for (p = 1; p <= n; p++)
        for (t = 1; t <= 5; t++)
            for (s = 1; s <= 5; s++) {
                id++
                printf "{\"inputs\": {\"prompt\": \"%s\"}, \"params\": {\"temperature\": %s, " \
                       "\"max_tokens\": 60}, \"tags\": {\"user\": \"u%d\", \"prompt\": \"p%d\"}, " \
                       "\"seed\": %d}\n", prompts[p], temps[t], id % 7, p, 1000 + s
            }
}' > "$REQUESTS"

step "1000 requests, one JSON object per line" "wc -l < $REQUESTS; head -2 $REQUESTS"
step "record them through the textgen-v1 plugin (one line per inference: id, output)" \
    "deja run --model textgen-v1 --requests $REQUESTS --tag source=demo > run.out"
step "what run printed" "head -3 run.out"
FIRST=$(head -1 run.out | cut -d' ' -f1)

step "the five newest traces" "deja ls --limit 5"
step "one user's traces (tags are indexed)" "deja ls --tag user=u3 --limit 5"
step "one prompt's traces, filters combined" \
    "deja ls --tag prompt=p1 --model textgen --version 1 --since 1h --limit 3"
step "the first trace in full (an id, or any unique prefix of one)" "deja show $FIRST"
step "the same, ready to paste into a bug report" "deja show $FIRST --md"
step "store size: payloads are content-addressed and compressed" "deja stats"
step "every record decodes, every blob matches its digest" "deja verify"

if [ -x "$BUILD/bin/instrumented" ]; then
    step "a program with its own model and RNG, recording through the span API" \
        "instrumented \"\$DEJA_STORE\" 3 | tee instrumented.out"
    INST=$(tail -1 instrumented.out | cut -d' ' -f1)
    if [ -n "$INST" ]; then
        step "one of its traces: the seed it used is recorded" "deja show $INST"
    fi
else
    printf '\n# (%s/bin/instrumented is not built: skipped)\n' "$BUILD"
fi

# ---------------------------------------------------------------------------
# REPLAY AND BISECT (added by the replay/bisect helper below this line)
# ---------------------------------------------------------------------------

# Commands that exit 1 on purpose (differences found) must not stop the demo.
shows_diff() { "$@" || echo "(exit status $?: differences found)"; }

step "replay one prompt's 25 traces on the version that recorded them: bit for bit" \
    "deja replay --tag prompt=p1 --model textgen-v1 --jobs 4"
step "replay where the environment differs: each difference that can change numerics is listed" \
    "OMP_NUM_THREADS=3 deja replay --tag prompt=p1 --model textgen-v1 --limit 3"
step "the same traces on textgen-v6: each divergence with its first differing words" \
    "shows_diff deja replay --tag prompt=p1 --model textgen-v6 --jobs 4 --limit 6"
SECOND=$(sed -n 2p run.out | cut -d' ' -f1)
step "diff two recorded traces (same prompt, another seed)" "shows_diff deja diff $FIRST $SECOND"
step "which version changed it? bisect v1..v6 over those traces (O(log n) replays)" \
    "deja bisect textgen-v1 textgen-v2 textgen-v3 textgen-v4 textgen-v5 textgen-v6 --tag prompt=p1"

# 40 feature vectors of 16 values, always the same.
FEATURES=features.jsonl
awk 'BEGIN {
    srand(7)
    for (r = 0; r < 40; r++) {
        printf "{\"inputs\": {\"features\": ["
        for (i = 0; i < 16; i++)
            printf "%s%.4f", i ? ", " : "", rand() * 2 - 1
        printf "]}, \"tags\": {\"set\": \"features\"}}\n"
    }
}' > "$FEATURES"
step "record 40 feature vectors through classifier-v1, with its layers' checkpoints" \
    "deja run --model classifier-v1 --requests $FEATURES --checkpoints all > classifier.out; tail -2 classifier.out"
step "classifier-v3 sums in another order: close, and the checkpoints say where it started" \
    "deja replay --tag set=features --model classifier-v3 --limit 4"
step "classifier-v5 changed a weight: some labels flip" \
    "shows_diff deja replay --tag set=features --model classifier-v5 --limit 6"
step "bisect names the version that flipped them" \
    "deja bisect classifier-v1 classifier-v2 classifier-v3 classifier-v4 classifier-v5 classifier-v6 --tag set=features"

# WHERE DID IT GO WRONG: the first divergent checkpoint, and token
step "stop each inference at its first divergent layer (saves the rest of a big model)" \
    "shows_diff deja replay --tag set=features --model classifier-v5 --limit 2 --stop-at-first"
step "record 3 generations with a checkpoint per token (the logits and the sampled byte)" \
    "deja run --model textgen-v1 --requests <(head -3 $REQUESTS | sed 's/\"p1\"/\"tokens\"/') --checkpoints all > tokens.out; tail -1 tokens.out"
step "on textgen-v4: the first divergent token, and the logits behind it" \
    "shows_diff deja replay --tag prompt=tokens --model textgen-v4 | grep -E 'diverged|first'"

# PIPELINES: one request through three models, recorded as a tree of traces
pipeline() { "$BUILD/bin/pipeline" "$@"; }
step "8 requests through preprocess -> classifier-v1 -> postprocess, each a run with three steps" \
    "pipeline pipeline.store preprocess classifier-v1 postprocess 8 > runs.out
     deja --store pipeline.store ls --tree --limit 1"
RUN=$(head -1 runs.out)
step "classifier-v5 in the middle: which step goes wrong first, and what changes downstream" \
    "shows_diff deja --store pipeline.store replay $RUN --model classifier=classifier-v5 --chained"

# BUNDLES: hand the case to a colleague, who replays it on another store
BAD=$(sed -n 3p run.out | cut -d' ' -f1)
step "export one trace into a bundle, with a bug report to paste" \
    "deja export $BAD -o case.deja --with-model textgen-v1 --md > case.md; head -12 case.md"
step "what the bundle holds, read in place" "deja show case.deja"
step "replay it straight from the bundle, nothing imported" \
    "deja replay case.deja --model textgen-v1"
step "the colleague imports it into a fresh store (ids are kept) and replays it there" \
    "deja --store colleague.store import case.deja && deja --store colleague.store replay $BAD --model textgen-v1"
step "importing the same bundle again changes nothing" \
    "deja --store colleague.store import case.deja"

# ---------------------------------------------------------------------------
# REAL MODELS: XGBoost and PyTorch (python helper)
# ---------------------------------------------------------------------------
ln -sfn "$BUILD/lib" models
if [ -f models/credit-xgb.so ]; then
    step "XGBoost: 200 loan applicants through the credit-xgb plugin; the ARG is the model file, its digest the weights" \
        "deja run --model credit-xgb:models/credit-v1.json --requests models/credit-requests.jsonl --tag set=credit > credit.out; tail -2 credit.out"
    step "credit-v2.ubj holds v1's trees saved in binary: another file, the same decisions" \
        "deja replay --tag set=credit --model credit-xgb:models/credit-v2.ubj | tail -1"
    step "bisect the four model files: which retraining changed decisions? (v3: income arrived in dollars)" \
        "deja bisect credit-xgb:models/credit-v1.json credit-xgb:models/credit-v2.ubj credit-xgb:models/credit-v3.json credit-xgb:models/credit-v4.json --tag set=credit | sed -n 1,7p"
else
    printf '\n# (the XGBoost example is not built: install libxgboost-dev)\n'
fi

if [ -f models/digits-v1.pt ] && [ -d "$BUILD/python/deja" ]; then
    export PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}"
    APP="$EXAMPLES/torch"
    cp "$APP/app.py" "$APP/model.py" "$APP/digits_model.py" .
    step "PyTorch: an application serves 30 digit images, recording each through deja.Tracer (MC dropout seeded by s.seed)" \
        "/usr/bin/python3 app.py models/digits-v1.pt -n 30 | tail -3"
    step "replay them through the model served over the exec runner protocol: bit for bit" \
        "deja replay --trace-model digits --model 'exec:/usr/bin/python3 model.py models/digits-v1.pt' | tail -1"
    step "v3 is v1 cast to half precision and back: close within --atol 0.01" \
        "deja replay --trace-model digits --atol 0.01 --model 'exec:/usr/bin/python3 model.py models/digits-v3.pt' | tail -1"
    step "bisect five versions: which one flips labels? (v4 was fine-tuned on mislabelled 3s)" \
        "deja bisect --model digits --atol 0.01 'exec:/usr/bin/python3 model.py models/digits-v1.pt' 'exec:/usr/bin/python3 model.py models/digits-v2.pt' 'exec:/usr/bin/python3 model.py models/digits-v3.pt' 'exec:/usr/bin/python3 model.py models/digits-v4.pt' 'exec:/usr/bin/python3 model.py models/digits-v5.pt' | sed -n 1,8p"
else
    printf '\n# (the PyTorch example is not built: install python3-dev, python3-torch, python3-sklearn)\n'
fi

# ---------------------------------------------------------------------------
# WATCHING THE LIVE SYSTEM: health per version, drift, rules, a report
# ---------------------------------------------------------------------------

# What valid classifier traffic looks like: checked by the tracer as it
# records (a broken rule tags the trace deja.invalid=RULE, never blocks it).
cat > demo.rules <<'RULES'
# name: side.tensor check [arguments]   (deja check --help)
finite: output.logits finite
features: input.features range -1 1
bounded: output.logits range -2.5 2.5
RULES
# 200 feature vectors, and the same population after an upstream change
# shifted features 3 and 7 by +0.8.
for phase in before after; do
    awk -v shift=$([ $phase = after ] && echo 0.8 || echo 0) 'BEGIN {
        srand(11)
        for (r = 0; r < 200; r++) {
            printf "{\"inputs\": {\"features\": ["
            for (i = 0; i < 16; i++)
                printf "%s%.4f", i ? ", " : "", \
                    rand() * 2 - 1 + ((i == 3 || i == 7) ? shift * rand() * 1.2 : 0)
            printf "]}}\n"
        }
    }' > traffic-$phase.jsonl
done

step "the rules, checked at record time" "cat demo.rules"
step "monday: classifier-v1 serves the usual traffic" \
    "deja run --model classifier-v1 --requests traffic-before.jsonl --tag phase=before --rules demo.rules > /dev/null"
step "tuesday: same version, but upstream changed and the inputs shifted" \
    "deja run --model classifier-v1 --requests traffic-after.jsonl --tag phase=after --rules demo.rules > /dev/null"
step "wednesday: classifier-v5 rolls out on the usual traffic" \
    "deja run --model classifier-v5 --requests traffic-before.jsonl --tag phase=v5 --rules demo.rules > /dev/null"
step "health per version: traffic, errors, traces a rule flagged, latency" \
    "deja stats --by version --model classifier"
step "what changed between monday and tuesday, ranked, with traces to follow (exit 1: drifted)" \
    "shows_diff deja drift --baseline 'tag.phase=before' --current 'tag.phase=after' --top 5"
step "v1 against v5 on the same inputs: the outputs moved" \
    "shows_diff deja drift --baseline 'tag.phase=before' --current 'tag.phase=v5' --top 3"
step "which traces break which rule" \
    "shows_diff deja check --rules demo.rules --model classifier > check.out; tail -4 check.out"
step "v5 reproduces its recordings bit for bit, and still breaks a rule: replay says so" \
    "shows_diff deja replay --tag phase=v5 --model classifier-v5 --rules demo.rules > replay-rules.out; grep -B1 'rule bounded' replay-rules.out | head -4; tail -1 replay-rules.out"
step "one page to look at: health over time, drift, violations, v5's traffic replayed on v1" \
    "deja replay --tag phase=v5 --model classifier-v1 --json > replay.json || true; deja report --model classifier --baseline 'tag.phase=before' --current 'tag.phase=after' --rules demo.rules --replay replay.json -o report.html"
# LLM ENDPOINTS: deja proxy in front of an OpenAI-compatible server.
# start NAME CMD...: run a server in the background until the demo ends, and
# wait for the base URL it prints first (into NAME.url).
SERVER_PIDS=()
stop_servers() { [ ${#SERVER_PIDS[@]} -eq 0 ] || kill "${SERVER_PIDS[@]}" 2>/dev/null || true; }
trap stop_servers EXIT
start() {
    local name=$1; shift
    # The binary itself, not the deja() function: a function in the
    # background is a subshell, and killing it would leave deja running.
    [ "$1" = deja ] && { shift; set -- "$DEJA_BIN" "$@"; }
    "$@" > "$name.url" 2> "$name.log" &
    SERVER_PIDS+=($!)
    for _ in $(seq 200); do [ -s "$name.url" ] && return 0; sleep 0.05; done
    cat "$name.log" >&2
    exit 2
}
# texts: the content fields of an answer (or of each streamed chunk), on one line.
texts() { grep -o '"content":"\([^"\\]\|\\.\)*"' | sed 's/^"content"://' | tr '\n' ' '; echo; }
ASK='{"model": "textgen", "max_tokens": 48, "temperature": 0.7, "messages": [{"role": "user", "content": "The fox and the crow"}]'
step "serve textgen-v1 as an OpenAI-compatible endpoint, on any free port" \
    'start v1 deja serve --model textgen-v1 --listen 127.0.0.1:0; V1=$(cat v1.url); echo "$V1"'
step "the recording proxy in front of it, into its own store" \
    'start proxy deja --store llm.store proxy --upstream "${V1%/v1}" --listen 127.0.0.1:0 --tag app=demo
     PROXY=$(cat proxy.url); PROXY_PID=${SERVER_PIDS[-1]}; echo "$PROXY"'
step "the application only changes its base URL; its API key is forwarded, never recorded" \
    'for seed in 1 2 3; do
         curl -s "$PROXY/chat/completions" -H "Authorization: Bearer sk-demo" \
              -H "Content-Type: application/json" -d "${ASK%\}}, \"seed\": $seed}" |
             texts
     done'
step "a stream passes through chunk by chunk" \
    'curl -sN "$PROXY/chat/completions" -H "Content-Type: application/json" \
          -d "${ASK%\}}, \"seed\": 4, \"stream\": true}" | texts'
step "stop the proxy: every exchange is a trace, with the GenAI params, the completion and the server's model" \
    'kill $PROXY_PID; wait $PROXY_PID 2>/dev/null || true; deja --store llm.store ls'
step "start the other versions, each behind its own deja serve" \
    'for v in 2 3 4 5 6; do start v$v deja serve --model textgen-v$v --listen 127.0.0.1:0; done
     V2=$(cat v2.url) V3=$(cat v3.url) V4=$(cat v4.url) V5=$(cat v5.url) V6=$(cat v6.url)'
step "replay the recorded requests against the server on v1: same answers" \
    'deja --store llm.store replay --model "$V1"'
step "against v6: diverged, and the server's changed fingerprint is named" \
    'shows_diff deja --store llm.store replay --model "$V6" --limit 1'
step "bisect across the six servers finds v4" \
    'deja --store llm.store bisect "$V1" "$V2" "$V3" "$V4" "$V5" "$V6"'

printf '\ndemo done: the store is %s\n' "$DEJA_STORE"
# Go on typing the README's commands in this shell: these two lines put the
# built `deja` on PATH and its example plugins on the plugin path.
printf '\nTo go on with the README'"'"'s commands, paste:\n'
printf 'export PATH="%s/bin:$PATH" DEJA_STORE="%s"\n' "$BUILD" "$DEJA_STORE"
printf 'export DEJA_PLUGIN_PATH="%s/lib"\n' "$BUILD"
