#!/usr/bin/env bash
# Every result table of docs/miniworld.md, in order of importance. About 80 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/miniworld/results
mkdir -p "$out"
# Every method with the faithful recipe (every training latent sampled fresh on the reference's 50-step DDIM
# schedule, as the reference code does), so that the methods compare on equal terms; what the default's latent pool
# changes is in pool_study.sh.
run() { python -m benchmarks.miniworld.evaluate --out-dir "$out" --set '{"pool_refreshes": 0, "joint_step": false, "ddim_steps": 50}' "$@"; }
run --task objects --methods none,esd,eap,age,uce --images-per-concept 16 --json "$out/objects.json"
run --task implicit --methods none,esd,eap,age,uce --images-per-concept 8 --json "$out/implicit.json"
run --task styles --methods none,esd,eap,age,uce --images-per-concept 8 --json "$out/styles.json"
run --task neighbours --methods esd,eap,age,uce --erase apple,car,house --images-per-concept 8 --json "$out/neighbours.json"
# The full one-concept-at-a-time sweep (all 25 concepts) for the fast methods: about 25 minutes on 2 CPU cores.
run --task neighbours --methods esd,uce --images-per-concept 8 --out-dir "$out/full" --json "$out/full/neighbours.json"
