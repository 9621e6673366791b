#!/usr/bin/env bash
# ESD-u's layers (issue 23.2): the implicit concept ("night" in the objects world, "underwater" in the icons world)
# erased by ESD from the `noxattn` layers as the paper trains them (each ResBlock's time projection included), and
# as this engine did before commit 22508f2 (those projections left out), checked out in a temporary worktree.
# Both worlds, seed 0, 8 images per prompt; at the defaults (training stops once the concept is erased) and for a
# fixed 100 steps. Results in benchmarks/results/esd_u/, a table in docs/worlds.md
# (python -m benchmarks.tables). About 25 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$PWD/benchmarks/results/esd_u
mkdir -p "$out"
before=$(mktemp -d)
pictures=$(mktemp -d)
trap 'git worktree remove --force "$before"' EXIT
git worktree add --detach "$before" 22508f2~1 >/dev/null
run() {  # run DIR NAME ARGS...: the implicit task with ESD, from the code in DIR
    local dir=$1 name=$2
    shift 2
    (cd "$dir" && python -m benchmarks.miniworld.evaluate --device cpu --task implicit --methods esd \
        --images-per-concept 8 --out-dir "$pictures" --json "$out/$name.json" "$@")
}
for world in ${WORLDS:-objects icons}; do
    run "$PWD" "${world}_implicit" --world "$world"
    run "$before" "${world}_implicit_without_resblock_time" --world "$world"
    fixed=(--world "$world" --steps 100 --set '{"until_erased": false}')
    run "$PWD" "${world}_implicit_100_steps" "${fixed[@]}"
    run "$before" "${world}_implicit_100_steps_without_resblock_time" "${fixed[@]}"
done
