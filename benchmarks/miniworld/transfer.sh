#!/usr/bin/env bash
# Transfer to community-like descendants (issue 24.1): make the objects world's descendants of a seed (style
# fine-tune, merge, new-concepts fine-tune, continued training; descend.py, cached under
# benchmarks/miniworld/.cache/descendants/), then erase split 1's five concepts on the base and compare, on each
# descendant, the base's LoRA as it is, the erasure trained there directly and the base's LoRA topped up there.
# Nothing in it was used to choose a setting. Seed 1's descendants are new models, made after seed 0's results.
# Results in benchmarks/results/transfer/, table in docs/transfer.md (python -m benchmarks.tables).
# On 2 CPU cores: 18 minutes of descendants per seed, then about 55 (seed 0, ESD and UCE, 16 images per concept)
# and 35 minutes (seed 1, ESD, 8 images per concept).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/transfer
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run() {  # seed, methods, images per concept
    python -m benchmarks.miniworld.descend --seed "$1"
    python -m benchmarks.miniworld.evaluate --task transfer --descendant-seed "$1" --methods "$2" \
        --images-per-concept "$3" --device cpu --out-dir "$tmp" --json "$out/objects_seed$1.json"
}
run 0 esd,uce 16
run 1 esd 8
