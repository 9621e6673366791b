#!/usr/bin/env bash
# Choosing where EAP and AGE preserve the concept their search finds (`pool_candidates`): 0 = on the erased
# concept's pooled latents, 8 = on trajectories of the found word's own prompt (as both papers sample them). Chosen
# on the objects world's choosing concepts (banana, bus, tower, mushroom; never reported), by the nearest concept's
# PSR-1 at ESR-1 >= 99; reported on the icons world by report_worlds.sh. Results in benchmarks/results/preserve/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/preserve
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for method in eap age; do
    for pool in 0 8; do
        python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods "$method" \
            --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
            --set "{\"pool_candidates\": $pool}" --json "$out/choose_objects_${method}_pool_candidates_$pool.json"
    done
done
