#!/usr/bin/env bash
# The main command: set up everything and run online-DPO rounds with a simulated annotator in between.
#
#   bash scripts/demo.sh            # setup, Label Studio, Prefect server + worker, deployments,
#                                   # base model (the shipped one), DEMO_ROUNDS rounds (default 3:
#                                   # round 0 fills the queue, rounds 1-2 fine-tune), then where to look
#   bash scripts/demo.sh stop       # stop the demo's Label Studio, Prefect server and worker
#
# Everything lives under runs/demo/ (registry, preference store, Label Studio data, Prefect home, logs),
# so the demo never touches data/preferences or runs/registry. Knobs (environment):
#   DEMO_ROUNDS=3  DEMO_PAIRS=100  DEMO_PREFECT_PORT=4200  DEMO_DIR=runs/demo
#   DEMO_BASE=driftsketch/pretrained/builtin-base.pt   (the base the rounds start from: shipped, trained by
#                                                      scripts/train_builtin_base.sh; or your own checkpoint)
#   DEMO_TRAIN_BASE=1 DEMO_BASE_STEPS=1500 DEMO_BASE_MODEL="model.dim=96,model.depth=4,batch_size=64"
#                                   (train a base through the base-train deployment instead; TrainConfig overrides)
#   DEMO_SET="eval.samples_per_class=8 dpo.overrides=[epochs=3]"   (more configs/round.yaml overrides)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=${DEMO_DIR:-runs/demo}
ROUNDS=${DEMO_ROUNDS:-3}
PAIRS=${DEMO_PAIRS:-100}
BASE=${DEMO_BASE:-driftsketch/pretrained/builtin-base.pt}
BASE_STEPS=${DEMO_BASE_STEPS:-1500}
BASE_MODEL=${DEMO_BASE_MODEL:-model.dim=96,model.depth=4,batch_size=64}  # small enough for a CPU
PORT=${DEMO_PREFECT_PORT:-4200}
PY=$ROOT/.venv/bin/python
PREFECT=$ROOT/.venv/bin/prefect
LS=$ROOT/.venv/bin/driftsketch-labelstudio
LS_SET=(--set "server.data_dir=$DEMO/labelstudio" --set "server.files_root=$DEMO/labelstudio-files"
        --set "push.store_root=$DEMO/preferences")
export PREFECT_HOME=$ROOT/$DEMO/prefect
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_SILENT=true
unset LABEL_STUDIO_URL LABEL_STUDIO_API_KEY  # the demo uses its own local Label Studio

say() { printf '\n[demo] %s\n' "$*"; }

stop_pid() {  # stop_pid NAME: stop the process recorded in $DEMO/NAME.pid (and its process group)
  local f=$DEMO/$1.pid pid i
  if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    pid=$(cat "$f")
    kill -- -"$pid" 2>/dev/null || kill "$pid"
    for i in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then  # a Prefect worker can hang in its SIGINT shutdown
      kill -9 -- -"$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    fi
    echo "stopped $1"
  fi
  rm -f "$f"
}

if [ "${1:-}" = "stop" ]; then
  stop_pid prefect-worker
  stop_pid prefect-server
  "$LS" stop "${LS_SET[@]}" || true
  exit 0
fi

say "1/6 virtualenvs (.venv for the project and Prefect, .venv-labelstudio for the Label Studio server)"
bash scripts/setup.sh
mkdir -p "$DEMO" "$PREFECT_HOME"

say "2/6 Label Studio (own data dir under $DEMO, 127.0.0.1)"
"$LS" start "${LS_SET[@]}"

say "3/6 Prefect server on 127.0.0.1:$PORT and a process worker"
if ! curl -sf "$PREFECT_API_URL/health" >/dev/null; then
  setsid "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$DEMO/prefect-server.log" 2>&1 &
  echo $! >"$DEMO/prefect-server.pid"
  for _ in $(seq 240); do curl -sf "$PREFECT_API_URL/health" >/dev/null && break; sleep 0.5; done
  curl -sf "$PREFECT_API_URL/health" >/dev/null || { tail "$DEMO/prefect-server.log"; exit 1; }
fi
"$PREFECT" work-pool inspect driftsketch-local >/dev/null 2>&1 || \
  "$PREFECT" work-pool create driftsketch-local --type process >/dev/null
"$PREFECT" --no-prompt deploy --name round --name base-train >"$DEMO/deploy.log" 2>&1 || { tail -20 "$DEMO/deploy.log"; exit 1; }
echo "deployments: online-dpo/round (nightly), base-train/base-train"
if ! { [ -f "$DEMO/prefect-worker.pid" ] && kill -0 "$(cat "$DEMO/prefect-worker.pid")" 2>/dev/null; }; then
  setsid "$PREFECT" worker start --pool driftsketch-local >"$DEMO/prefect-worker.log" 2>&1 &
  echo $! >"$DEMO/prefect-worker.pid"
fi

# The demo's round parameters: configs/round.yaml plus these overrides, as the JSON the Prefect form takes. A round
# trains once PAIRS/4 new usable pairs arrived: the bot ties 30-40 % of the shipped base's pairs (both good), and
# gold, evaluation and held-out pairs do not count, so 100 answers give ~45-50 usable pairs.
OVERRIDES=("registry_dir=$DEMO/registry" "preference_dir=$DEMO/preferences" "work_dir=$DEMO/work"
           "base.train_overrides=[max_steps=$BASE_STEPS,$BASE_MODEL]" "dpo.min_new_preferences=$((PAIRS / 4))"
           "generate.queue_target=$PAIRS" "generate.max_new_pairs=$PAIRS"
           "labelstudio.overrides=[server.data_dir=$DEMO/labelstudio,server.files_root=$ROOT/$DEMO/labelstudio-files]")
read -r -a EXTRA <<<"${DEMO_SET:-}"
OVERRIDES+=("${EXTRA[@]}")
PARAMS=$("$PY" -c 'import json, sys; from flows.params import load_round_params
print(json.dumps({"params": load_round_params(overrides=sys.argv[1:]).model_dump(mode="json")}))' "${OVERRIDES[@]}")

run_deployment() {  # run_deployment NAME PARAMS_JSON: through the worker, waiting for the end
  "$PREFECT" deployment run "$1" --params "$2" --watch --watch-timeout 3600 >"$DEMO/last-run.log" 2>&1 || true
  grep -q "Completed" "$DEMO/last-run.log" || { tail -30 "$DEMO/last-run.log"; tail -30 "$DEMO/prefect-worker.log"; exit 1; }
}

say "4/6 base model"
if "$PY" -m driftsketch.registry_cli --registry "$DEMO/registry" list | grep -q '^\*'; then
  echo "registry $DEMO/registry already has a current model"
elif [ -z "${DEMO_TRAIN_BASE:-}" ]; then
  echo "using $BASE (the shipped built-in base; DEMO_TRAIN_BASE=1 trains one instead, DEMO_BASE=FILE uses yours)"
  OVERRIDES+=("base.checkpoint=$BASE")
  PARAMS=$("$PY" -c 'import json, sys; from flows.params import load_round_params
print(json.dumps({"params": load_round_params(overrides=sys.argv[1:]).model_dump(mode="json")}))' "${OVERRIDES[@]}")
else
  echo "training a base model on the built-in data ($BASE_STEPS steps, $BASE_MODEL) through the base-train deployment"
  run_deployment base-train/base-train "$("$PY" -c 'import json, sys
print(json.dumps({"overrides": ["max_steps=" + sys.argv[1], *sys.argv[3].split(","), "wandb=false"],
                  "checkpoint_dir": sys.argv[2] + "/work/base", "registry_dir": sys.argv[2] + "/registry"}))' \
    "$BASE_STEPS" "$DEMO" "$BASE_MODEL")"
fi

say "5/6 $ROUNDS rounds of online-dpo/round, the simulated annotator answering in between"
# The simulated annotator judges with its own classifier (configs/eval.yaml annotator_classifier: another part
# of the data than the round's gate and reward model use), so the gate never grades with the bot's network.
ANNOTATOR_CLF=$DEMO/work/annotator-classifier.pt
DATA=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["params"]["data"])' "$PARAMS")
if [ ! -f "$ANNOTATOR_CLF" ]; then
  "$ROOT/.venv/bin/driftsketch-eval" train-classifier --data "$DATA" --section annotator_classifier \
    --out "$ANNOTATOR_CLF" >"$DEMO/annotator-classifier.log" 2>&1 || { tail "$DEMO/annotator-classifier.log"; exit 1; }
fi
for r in $(seq 0 $((ROUNDS - 1))); do
  echo "--- round $r: prefect deployment run online-dpo/round"
  run_deployment online-dpo/round "$PARAMS"
  report=$(ls -t "$DEMO"/work/reports/*/report.md | head -1)
  sed -n '1,6p' "$report"
  awk '/^Judged by the annotators/{f=1; next} f && /^- /{print; next} f && NF{exit}' "$report"  # vs the base, as the bot judged
  if [ "$r" -lt $((ROUNDS - 1)) ]; then
    "$LS" bot "${LS_SET[@]}" --judge labeling --classifier "$ANNOTATOR_CLF"
  fi
done

say "6/6 where to look"
"$PY" -m driftsketch.registry_cli --registry "$DEMO/registry" list
LS_URL=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$DEMO/labelstudio/server.json")
cat <<EOF

  Model registry      driftsketch-models --registry $DEMO/registry list | show ID | promote ID | rollback
  Round reports       $DEMO/work/reports/*/report.md   (metrics table, decision, grid paths)
  Before/after grids  $DEMO/work/eval/<model id>-*/grid.png  (each round: candidate, current and base on that round's noise)
  Label Studio        $LS_URL  (login: $DEMO/labelstudio/credentials.json)
  Prefect UI          http://127.0.0.1:$PORT  (flow runs, the round artifact, the deployment form)
  Stop everything     bash scripts/demo.sh stop
EOF
