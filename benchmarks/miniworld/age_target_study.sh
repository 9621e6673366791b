#!/usr/bin/env bash
# AGE at its defaults with its target measured as training steers to it (16 drawn candidates, issue 23.4), one
# concept at a time on both worlds; the runs before the change are preserve/choose_objects_age_pool_candidates_0.json
# and worlds/icons_neighbours_eap_age.json. Table in docs/worlds.md (python -m benchmarks.tables).
# About 12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python -m benchmarks.miniworld.evaluate --world objects --task neighbours --methods age \
    --erase banana,bus,tower,mushroom --images-per-concept 8 --device cpu --out-dir "$tmp" \
    --json benchmarks/results/preserve/choose_objects_age_drawn_target.json
python -m benchmarks.miniworld.evaluate --world icons --task neighbours --methods age --erase cat,shoe,guitar \
    --images-per-concept 8 --device cpu --out-dir "$tmp" --json benchmarks/results/worlds/icons_neighbours_age.json
