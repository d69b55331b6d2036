#!/usr/bin/env bash
# Seed sweep for `relax reinforce` on Acrobot-v1 (the README table): one run per
# (estimator, baseline, seed), each `relax reinforce ... --json`, stopping when solved.
#
# Usage: experiments/reinforce_seeds.sh [OUT_ROOT] [extra relax reinforce options...]
#   OUT_ROOT   where run directories go (default runs/reinforce-seeds)
#   SEEDS      env var, default "0 1 2 3 4"
#   CONFIGS    env var, space-separated estimator:baseline pairs,
#              default "reinforce:value reinforce:mean reinforce:none relax:value"
#   EPISODES   env var, episode budget per run (default 1000)
# Every run's summary line is appended to OUT_ROOT/results.jsonl; runs that already have a
# summary.json are skipped, so an interrupted sweep can be started again.
set -euo pipefail

OUT_ROOT="${1:-runs/reinforce-seeds}"
shift || true
SEEDS="${SEEDS:-0 1 2 3 4}"
CONFIGS="${CONFIGS:-reinforce:value reinforce:mean reinforce:none relax:value}"
EPISODES="${EPISODES:-1000}"
mkdir -p "$OUT_ROOT"
RESULTS="$OUT_ROOT/results.jsonl"

for cfg in $CONFIGS; do
  est="${cfg%%:*}"; base="${cfg##*:}"
  for seed in $SEEDS; do
    dir="$OUT_ROOT/$est-$base/seed$seed"
    if [[ -f "$dir/summary.json" ]]; then
      echo "skip $dir (done)" >&2
      continue
    fi
    echo "run  $dir" >&2
    relax reinforce --env Acrobot-v1 --estimator "$est" --baseline "$base" --seed "$seed" \
      --episodes "$EPISODES" --stop-when-solved --device cpu --quiet --json \
      --out "$dir" --overwrite "$@" >> "$RESULTS"
  done
done

# Median episodes-to-solve (unsolved runs count as not solved) and wall time per configuration.
python - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["estimator"], r["baseline"]), {})[r["seed"]] = r   # last run per seed
print("| estimator | baseline | solved | episodes to solve per seed | median | wall s per seed | median wall s |")
print("|---|---|---|---|---|---|---|")
for (est, base), runs in groups.items():
    runs = [runs[s] for s in sorted(runs)]
    eps = [r["episodes_to_solve"] for r in runs]
    wall = [r["wall_seconds"] for r in runs]
    solved = [e for e in eps if e is not None]
    # unsolved runs rank above every solved one, so the median is honest about failures
    ranked = sorted(solved) + [float("inf")] * (len(eps) - len(solved))
    med = statistics.median_low(ranked) if ranked else None
    print(f"| {est} | {base} | {len(solved)}/{len(eps)} | "
          f"{', '.join('-' if e is None else str(e) for e in eps)} | "
          f"{'not solved' if med in (None, float('inf')) else med} | "
          f"{', '.join(f'{w:.0f}' for w in wall)} | {statistics.median(wall):.0f} |")
PY
