#!/usr/bin/env bash
# Issue #12 on a lent GPU machine, as one prepared command: the CUDA checks, the speed of
# train-vae on the device, Jang et al. 2017's Table 1 protocol (reproduce_jang2017.sh with
# Table 1's linear model and learned prior, Adam at the learning rates 1e-3 and 3e-3, 42 runs of
# 91 epochs), the paper's own optimiser (SGD with momentum 0.9) at three of its learning rates
# (jang-sgd), the every-method VAE table
# under the same protocol, 91 epochs (~50k steps) x 3 seeds (vae_methods.sh PROTOCOL=paper),
# and the Table 1 protocol again with the authors' notebook MLP (jang-notebook), JOBS runs at a
# time on the one GPU, all under a DEADLINE in seconds. Runs
# write a checkpoint every epoch and `relax train-vae --resume` continues them; what comes back
# in $OUT is the small part of every run (config, metrics, summary, status, log), the
# `relax compare` tables of the finished ones, and what each step printed.
#
# Prepare (on this machine; the data folder is not on the device, its .gz files are 11.6 MB):
#   mkdir -p device-data/MNIST/raw && cp ../shared/data/MNIST/raw/*.gz device-data/MNIST/raw/
# Run (the device tool: carry device-data, bring back $OUT):
#   OUT=$OUT DEADLINE=540 bash experiments/gpu_session.sh
# Plumbing check on a CPU machine (synthetic data, 1 epoch each):
#   SMOKE=1 DEVICE=cpu JOBS=2 OUT=/tmp/gpu-smoke bash experiments/gpu_session.sh
#
# Environment:
#   OUT       where the results go (required; must be empty or new)
#   DEVICE    cuda (default) or cpu
#   JOBS      runs at a time (default 16: the H200 machine's cores, one thread per run)
#   DEADLINE  seconds for everything (default 540); steps start only with time left
#   DATA      the MNIST folder (default device-data, else RELAX_DATA_DIR)
#   STEPS     which of env,tests,speed,jang,methods,jang-sgd,jang-notebook to run (default all, in this
#             order)
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
: "${OUT:?set OUT to the folder whose contents come back}"
: "${DEVICE:=cuda}" "${JOBS:=16}" "${DEADLINE:=540}" "${SMOKE:=0}"
: "${STEPS:=env,tests,speed,jang,methods,jang-sgd,jang-notebook}"
if [[ -z "${DATA:-}" ]]; then
  if [[ -d "$root/device-data" ]]; then DATA="$root/device-data"; else DATA="${RELAX_DATA_DIR:-}"; fi
fi
if [[ -e "$OUT" && -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
  echo "error: OUT=$OUT is not empty" >&2
  exit 2
fi
mkdir -p "$OUT"
export RELAX_DATA_DIR="$DATA" RELAX_OFFLINE=1 MPLBACKEND=Agg SMOKE JOBS
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" RELAX="python -m relaxcli.cli"
work="$(mktemp -d)"  # full run directories (models, checkpoints) stay here
start=$SECONDS
left() { echo $((DEADLINE - (SECONDS - start))); }
want() { [[ ",$STEPS," == *",$1,"* ]]; }
log() { echo "[$(($SECONDS - start)) s] $*" | tee -a "$OUT/session.log" >&2; }

# copy the small files of every run under $1 to $OUT/$2 (models and checkpoints stay behind)
bring_back() {
  (cd "$1" && find . \( -name config.json -o -name summary.json -o -name metrics.jsonl \
     -o -name status -o -name log.txt -o -name '*.csv' -o -name '*.md' -o -name '*.log' \
     -o -name commands.txt \) -print0 | while IFS= read -r -d '' f; do
       mkdir -p "$OUT/$2/$(dirname "$f")" && cp "$f" "$OUT/$2/$f"; done)
}

# sweep NAME SCRIPT [VAR=VALUE...]: one experiments/ script under the time left (minus 30 s to
# bring things back); runs cut by the deadline are marked interrupted and come back as such
sweep() {
  local name="$1" script="$2"; shift 2
  local t=$(( $(left) - 30 ))
  if (( t < 60 )); then log "skip $name: $t s left"; return; fi
  log "start $name ($t s)"
  env "$@" OUT="$work/$name" EXTRA="--device $DEVICE" timeout -s TERM "$t" \
    bash "$here/$script" > "$OUT/$name.out" 2>&1
  log "end $name: exit $?"
  bring_back "$work/$name" "$name"
}

if want env; then
  { date -u; nvidia-smi 2>&1 || echo "no nvidia-smi"; nproc; free -g
    python -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', c,
               torch.cuda.get_device_name(0) if c else '-')"; } > "$OUT/env.txt" 2>&1
  log "env: $(tail -n 1 "$OUT/env.txt")"
fi
if want tests; then  # the tests that need a CUDA device (skipped on CPU machines)
  timeout 120 python -m pytest -p no:cacheprovider -n 0 -q -rs "$root/tests" -k "cuda or device" \
    > "$OUT/pytest-device.txt" 2>&1
  log "device tests: $(tail -n 1 "$OUT/pytest-device.txt")"
fi
if want speed; then  # seconds per epoch on the device, one run alone
  dataset=mnist; [[ "$SMOKE" == 1 ]] && dataset=synthetic
  timeout 120 $RELAX train-vae --method gumbel-softmax --epochs 1 --device "$DEVICE" --dataset "$dataset" \
    --out "$work/speed" --json --quiet > "$OUT/speed.json" 2> "$OUT/speed.err"
  log "speed: exit $? $(python -c "import json,sys; d=json.load(open(sys.argv[1])); print('s/epoch', d.get('seconds_per_epoch'))" "$OUT/speed.json" 2>/dev/null)"
  bring_back "$work/speed" speed
fi
want jang && sweep jang reproduce_jang2017.sh MODEL=paper LRS="1e-3 3e-3"
want methods && sweep methods vae_methods.sh PROTOCOL=paper SEEDS="${SEEDS:-0 1 2}"
want jang-sgd && sweep jang-sgd reproduce_jang2017.sh MODEL=paper OPTIMIZER=sgd LRS="3e-3 1e-3 3e-4"
want jang-notebook && sweep jang-notebook reproduce_jang2017.sh MODEL=notebook
log "done; full run directories in $work (lost when the machine is handed back)"
