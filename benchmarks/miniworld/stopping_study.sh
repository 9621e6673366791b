#!/usr/bin/env bash
# Choosing `erased_at` (the measured erasure at which training stops for a concept) on the objects world only, on
# concepts that no reported table uses (banana, bus, tower, mushroom), seed 0; the choice is then reported on the
# icons world (report_worlds.sh), which it never saw. Each run is an `evaluate` neighbours report in
# benchmarks/results/stopping/. About 20 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/stopping
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for at in 0.6 0.7 0.8; do  # ESD, the base every method builds on
    python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods esd \
        --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
        --set "{\"erased_at\": $at}" --json "$out/choose_objects_esd_erased_at_$at.json"
done
