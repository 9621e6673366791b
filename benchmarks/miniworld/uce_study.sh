#!/usr/bin/env bash
# Choosing UCE's `tokens` (which token embeddings the closed form edits) on the objects world's choosing concepts
# (banana, bus, tower, mushroom; never reported): the smallest change from the reference ("subject", UCE's current
# code) that reaches ESR-1 >= 95 with the nearest concept kept. Reported on the icons world by report_worlds.sh.
# Results in benchmarks/results/uce/. A few minutes on 2 CPU cores (UCE itself takes well under a second).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/uce
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for tokens in subject tail all; do
    python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods uce \
        --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
        --set "{\"tokens\": \"$tokens\"}" --json "$out/choose_objects_uce_tokens_$tokens.json"
done
# UCE's optional prompt expansion (5 templates), on the last subject token
python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods uce \
    --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
    --set '{"templates": 5}' --json "$out/choose_objects_uce_templates_5.json"
