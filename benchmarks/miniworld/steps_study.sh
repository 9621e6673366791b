#!/usr/bin/env bash
# Fewer steps at the SD step count (docs/speed.md, "Fewer steps"): the engine's default of 500 steps at twice the LoRA
# step of the faithful 1000, on the miniature world with its own step scale (1000 steps at lr 3e-4, the Adam path
# length of its 100 steps at 3e-3; so 500 at 6e-4 and 250 at 1.2e-3). The shorter runs use the default recipe
# (latent pool 'auto'); the faithful runs sample every latent fresh. Each run is an `evaluate` report in
# benchmarks/results/, compared with `compare_recipes`. Single-threaded runs, two at a time, take about 2 hours on
# 2 CPU cores; the faithful 1000-step objects runs of ESD (seed 0) and EAP are pool_study.sh's.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results
tmp=$(mktemp -d)
export OMP_NUM_THREADS=1
# Every run here was made when every method sampled its training latents on the 50-step DDIM schedule (AGE's
# default is 25 steps since; ddim_study.sh), so the schedule is pinned under each run's own settings.
run() { python -m benchmarks.miniworld.evaluate --device cpu --out-dir "$tmp" --set '{"ddim_steps": 50}' "$@"; }
faithful='{"lr": 3e-4, "pool_refreshes": 0, "joint_step": false}'
nb=(--task neighbours --erase apple,car,house --images-per-concept 8)

# Five concepts per run (objects): ESD on 4 splits, EAP and AGE on splits 1-2 (each concept erased once).
run --task objects --methods esd --steps 500 --set '{"lr": 6e-4}' --json "$out/miniworld_objects_500steps_esd.json" &
run --task objects --methods eap --splits 2 --steps 500 --set '{"lr": 6e-4}' --json "$out/miniworld_objects_500steps_eap.json"
wait
run --task objects --methods esd --steps 250 --set '{"lr": 1.2e-3}' --json "$out/miniworld_objects_250steps_esd.json" &
run --task objects --methods eap --splits 2 --steps 500 --seed 1 --set '{"lr": 6e-4}' \
    --json "$out/miniworld_objects_500steps_eap_seed1.json"
wait
run --task objects --methods esd --steps 500 --seed 1 --set '{"lr": 6e-4}' --json "$out/miniworld_objects_500steps_esd_seed1.json" &
run --task objects --methods eap --splits 2 --steps 250 --set '{"lr": 1.2e-3}' --json "$out/miniworld_objects_250steps_eap.json"
wait
run --task objects --methods esd --steps 1000 --seed 1 --set "$faithful" --json "$out/miniworld_objects_1000steps_seed1.json" &
run --task objects --methods none,age --splits 2 --steps 1000 --set "$faithful" --json "$out/miniworld_objects_1000steps_age.json"
wait
run --task objects --methods age --splits 2 --steps 500 --set '{"lr": 6e-4}' --json "$out/miniworld_objects_500steps_age.json" &
# One concept per run (the speed benchmark's setting).
run "${nb[@]}" --methods eap --steps 1000 --set "$faithful" --json "$out/miniworld_neighbours_1000steps_eap.json"
wait
run "${nb[@]}" --methods esd --steps 1000 --set "$faithful" --json "$out/miniworld_neighbours_1000steps_esd.json"
run "${nb[@]}" --methods esd,eap --steps 500 --set '{"lr": 6e-4}' --json "$out/miniworld_neighbours_500steps.json"

# AGE's joint step on the pool re-sampled 16 times (its default for one concept in 256 steps or more; five concepts
# in 500 steps keep the alternating schedule with the pool for the search only, the run above) and its parts, against
# the faithful 1000 steps (objects, splits 1-2, seed 0). The runs before commit 437482c (the one above, pool2x4,
# joint_pool2x4) sampled a fresh noisiest latent for the target prompt apart from the erased one's. The joint step's
# runs here sampled the noisiest 11 latents fresh, its default then (`"pool_fresh_steps": 10`; 5 since).
age() { run --task objects --methods age --splits 2 --steps 500 --set "{\"lr\": 6e-4$1}" --json "$out/miniworld_objects_500steps_age$2.json"; }
age ', "joint_step": true, "pool_fresh_steps": 10' _joint &
age ', "joint_step": false, "pool_search_only": false, "pool_refreshes": 4' _pool2x4
wait
age ', "joint_step": true, "pool_refreshes": 4, "pool_fresh_steps": 10' _joint_pool2x4 &
age ', "joint_step": true, "pool_fresh_steps": 0' _joint_pool2x16_f0
wait
run "${nb[@]}" --methods age --steps 1000 --set "$faithful" --json "$out/miniworld_neighbours_1000steps_age.json" &
run "${nb[@]}" --methods age --steps 500 --set '{"lr": 6e-4, "pool_fresh_steps": 10}' \
    --json "$out/miniworld_neighbours_500steps_age.json"
wait

# ESD at 400 steps (lr 2.5e-4 on SD, the same Adam path length: 7.5e-4 here), tried as its default and not kept:
# objects over seeds 0-1, one concept per run over seeds 0-1 against the faithful 1000 steps again with seed 1.
esd400() { run --methods esd --steps 400 --set '{"lr": 7.5e-4}' "$@"; }
esd400 --task objects --json "$out/miniworld_objects_400steps_esd.json" &
esd400 --task objects --seed 1 --json "$out/miniworld_objects_400steps_esd_seed1.json"
wait
esd400 "${nb[@]}" --json "$out/miniworld_neighbours_400steps_esd.json" &
esd400 "${nb[@]}" --seed 1 --json "$out/miniworld_neighbours_400steps_esd_seed1.json"
wait
run "${nb[@]}" --methods esd --steps 1000 --seed 1 --set "$faithful" --json "$out/miniworld_neighbours_1000steps_esd_seed1.json"

c() { python -m benchmarks.miniworld.compare_recipes "$@"; }
esd1000="$out/miniworld_objects_1000steps.json,$out/miniworld_objects_1000steps_seed1.json"
eap1000="$out/miniworld_objects_1000steps_eap.json,$out/miniworld_objects_1000steps_eap_seed1.json"
c "$esd1000" "$out/miniworld_objects_500steps_esd.json,$out/miniworld_objects_500steps_esd_seed1.json" --labels faithful-1000,default-500
c "$eap1000" "$out/miniworld_objects_500steps_eap.json,$out/miniworld_objects_500steps_eap_seed1.json" --labels faithful-1000,default-500
c "$out/miniworld_objects_1000steps_age.json" "$out/miniworld_objects_500steps_age.json" --labels faithful-1000,default-500
c "$esd1000" "$out/miniworld_objects_250steps_esd.json" --labels faithful-1000,default-250
c "$eap1000" "$out/miniworld_objects_250steps_eap.json" --labels faithful-1000,default-250
for method in esd eap; do
    c "$out/miniworld_neighbours_1000steps_$method.json" "$out/miniworld_neighbours_500steps.json" --labels faithful-1000,default-500
done
c "$out/miniworld_neighbours_1000steps_age.json" "$out/miniworld_neighbours_500steps_age.json" --labels faithful-1000,default-500
for recipe in joint pool2x4 joint_pool2x4 joint_pool2x16_f0; do
    c "$out/miniworld_objects_1000steps_age.json" "$out/miniworld_objects_500steps_age_$recipe.json" --labels "faithful-1000,$recipe"
done
c "$esd1000" "$out/miniworld_objects_400steps_esd.json,$out/miniworld_objects_400steps_esd_seed1.json" --labels faithful-1000,esd-400
c "$out/miniworld_neighbours_1000steps_esd.json,$out/miniworld_neighbours_1000steps_esd_seed1.json" \
    "$out/miniworld_neighbours_400steps_esd.json,$out/miniworld_neighbours_400steps_esd_seed1.json" --labels faithful-1000,esd-400
