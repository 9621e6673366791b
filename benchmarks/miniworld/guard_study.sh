#!/usr/bin/env bash
# Choosing `guard_neighbours` (how many of each erased concept's nearest words the trainer keeps; 0 = off) on the
# objects world's choosing concepts (banana, bus, tower, mushroom; never reported), with ESD, the base every trained
# method builds on; guard 0 is stopping_study.sh's erased_at 0.7 run. Reported on the icons world by
# report_worlds.sh. Results in benchmarks/results/guard/. About 10 minutes on 2 CPU cores (the guard encodes the whole vocabulary once per run).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/guard
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for n in 4; do
    python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods esd \
        --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
        --set "{\"guard_neighbours\": $n}" --json "$out/choose_objects_esd_guard_neighbours_$n.json"
done
