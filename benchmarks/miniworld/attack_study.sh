#!/usr/bin/env bash
# The attack task (issue 25.2) on both miniature worlds: one concept each (the first of the world), every method
# at its defaults, the engine's attack audit with a 120 s budget, images judged by the world's classifier.
# Results in benchmarks/results/attack/, table in docs/attack.md (python -m benchmarks.tables). About 25 minutes
# on 2 CPU cores, the robust runs about 15 more.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results/attack
mkdir -p "$out"
for world in objects icons; do
    python -m benchmarks.miniworld.evaluate --world "$world" --task attack --methods none,esd,eap,age,uce \
        --attack-budget 120 --images-per-concept 16 --seed 1 --json "$out/${world}_one_concept.json" \
        --out-dir "$(mktemp -d)"
done
# The robust mode beside the plain one (issue 25.3): ESD and EAP with --robust, the same concept, budget and seed.
for world in objects icons; do
    python -m benchmarks.miniworld.evaluate --world "$world" --task attack --methods esd,eap --set '{"robust": true}' \
        --attack-budget 120 --images-per-concept 16 --seed 1 --json "$out/${world}_one_concept_robust.json" \
        --out-dir "$(mktemp -d)"
done
