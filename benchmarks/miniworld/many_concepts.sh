#!/usr/bin/env bash
# Quality and cost against the number of concepts erased in one LoRA, on the icons world (never used for choosing):
# N = 10 and 20 concepts, taken one group at a time in turn (cat, guitar, sun, shirt, chair, star, dog, ...), no
# kept list, each method at its defaults; the concepts not erased are the preserved ones (same group / other groups).
# Results in benchmarks/results/many/, table in docs/worlds.md (python -m benchmarks.tables).
# METHODS=none,esd,uce by default (about 10 minutes on 2 CPU cores); EAP and AGE cost about a minute per concept here.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/many
mkdir -p "$out"
tmp=$(mktemp -d)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
order=$(python - <<'PY'
from itertools import zip_longest
from benchmarks.miniworld.world import get_world
groups = get_world("icons").groups.values()
print(",".join(c for row in zip_longest(*groups) for c in row if c))
PY
)
for n in ${COUNTS:-1 10 20}; do  # 1: the cost of one concept alone, for the growth with N
    erase=$(echo "$order" | cut -d, -f1-"$n")
    python -m benchmarks.miniworld.evaluate --world icons --task objects --methods "${METHODS:-none,esd,uce}" \
        --erase "$erase" --images-per-concept 8 --device cpu --out-dir "$tmp" --json "$out/icons_erase_$n.json"
done
