#!/usr/bin/env bash
# The latent pool against fresh sampling on the miniature world (docs/speed.md, "The latent pool"): each run is a
# `evaluate` report in benchmarks/results/, compared with `compare_recipes`. Single-threaded runs, two at a time,
# take about 8 hours on 2 CPU cores in all.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results
tmp=$(mktemp -d)
export OMP_NUM_THREADS=1
# Every run here was made when every method sampled its training latents on the 50-step DDIM schedule (AGE's
# default is 25 steps since; ddim_study.sh), so the schedule is pinned under each run's own settings.
run() { python -m benchmarks.miniworld.evaluate --device cpu --out-dir "$tmp" --set '{"ddim_steps": 50}' "$@"; }
# AGE ran here with the reference's alternating schedule (`joint_step` false), its default at the time.
pool() { echo "{\"pool_refreshes\": $1, \"pool_trajectories\": $2, \"joint_step\": false$3}"; }
fresh='{"pool_refreshes": 0, "joint_step": false}'  # the faithful recipe: every latent sampled fresh, whatever the default resolves to

# Objects, 100 steps (the demo's recipe); the faithful run is results/objects.json of run_all.sh.
run --task objects --methods esd,eap,age --set "$(pool 4 2)" --json "$out/miniworld_objects_pool_2x4.json" &
run --task objects --methods esd,eap,age --set "$(pool 8 4)" --json "$out/miniworld_objects_pool_4x8.json"
wait
run --task objects --methods esd,eap,age --set "$(pool 4 4 ', "pool_model": "original", "pool_fresh_steps": 0')" \
    --json "$out/miniworld_objects_original_pool.json" &
# The faithful recipe again with other seeds (training and images): how far two faithful runs differ.
run --task objects --methods none,esd,eap,age --seed 1 --set "$fresh" --json "$out/miniworld_objects_faithful_seed1.json"
wait
# One concept at a time, as the speed benchmark erases.
run --task neighbours --methods esd,eap,age --erase apple,car,house --images-per-concept 8 --set "$(pool 4 2)" \
    --json "$out/miniworld_neighbours_pool_2x4.json" &
# The SD step count: 1000 steps at lr 3e-4 (the same Adam path length as 100 steps at 3e-3), ESD.
run --task objects --methods esd --steps 1000 --set '{"lr": 3e-4, "pool_refreshes": 4, "pool_trajectories": 2}' \
    --json "$out/miniworld_objects_1000steps_pool_2x4.json"
wait
run --task objects --methods none,esd --steps 1000 --set '{"lr": 3e-4, "pool_refreshes": 0}' --json "$out/miniworld_objects_1000steps.json" &
# EAP at 1000 steps on splits 1 and 2 (each of the ten concepts erased once): the faithful run alone takes an hour.
run --task objects --methods eap --splits 2 --steps 1000 --set '{"lr": 3e-4, "pool_refreshes": 4, "pool_trajectories": 2}' \
    --json "$out/miniworld_objects_1000steps_eap_pool_2x4.json"
wait
run --task objects --methods none,eap --splits 2 --steps 1000 --set '{"lr": 3e-4, "pool_refreshes": 0}' \
    --json "$out/miniworld_objects_1000steps_eap.json"
# ESD, the fastest method, with two more seeds of each recipe, for averages; EAP and AGE with seed 1 of each
# recipe, objects and one concept per run.
run --task objects --methods esd --seed 1 --set "$(pool 4 2)" --json "$out/miniworld_objects_esd_pool_2x4_seed1.json" &
run --task objects --methods esd --seed 2 --set "$(pool 4 2)" --json "$out/miniworld_objects_esd_pool_2x4_seed2.json"
wait
run --task objects --methods eap,age --seed 1 --set "$(pool 4 2)" --json "$out/miniworld_objects_pool_2x4_eap_age_seed1.json" &
run --task objects --methods esd --seed 2 --set "$fresh" --json "$out/miniworld_objects_esd_seed2.json"
nb=(--task neighbours --methods eap,age --erase apple,car,house --images-per-concept 8 --seed 1)
run "${nb[@]}" --set "$fresh" --json "$out/miniworld_neighbours_seed1.json"
run "${nb[@]}" --set "$(pool 4 2)" --json "$out/miniworld_neighbours_pool_2x4_seed1.json"
wait
# Seeds 2 and 3 of one concept per run (EAP and AGE; ESD over seeds 0-2), EAP at 1000 steps
# with seed 1, and the two single-concept tasks: where 'auto' resolves to the pool.
nb=(--task neighbours --erase apple,car,house --images-per-concept 8)
run "${nb[@]}" --methods eap,age --seed 2 --set "$fresh" --json "$out/miniworld_neighbours_seed2.json" &
run "${nb[@]}" --methods eap,age --seed 2 --set "$(pool 4 2)" --json "$out/miniworld_neighbours_pool_2x4_seed2.json"
wait
run "${nb[@]}" --methods eap,age --seed 3 --set "$fresh" --json "$out/miniworld_neighbours_seed3.json" &
run "${nb[@]}" --methods esd,eap,age --seed 3 --set "$(pool 4 2)" --json "$out/miniworld_neighbours_pool_2x4_seed3.json"
wait
run --task objects --methods eap --splits 2 --steps 1000 --seed 1 --set '{"lr": 3e-4, "pool_refreshes": 0}' \
    --json "$out/miniworld_objects_1000steps_eap_seed1.json" &
run --task objects --methods eap --splits 2 --steps 1000 --seed 1 \
    --set '{"lr": 3e-4, "pool_refreshes": 4, "pool_trajectories": 2}' --json "$out/miniworld_objects_1000steps_eap_pool_2x4_seed1.json"
run --task styles --methods esd,eap,age --images-per-concept 8 --set "$(pool 4 2)" --json "$out/miniworld_styles_pool_2x4.json"
run --task implicit --methods esd,eap,age --images-per-concept 8 --set "$(pool 4 2)" \
    --json "$out/miniworld_implicit_pool_2x4.json"
run "${nb[@]}" --methods esd --seed 1 --set "$fresh" --json "$out/miniworld_neighbours_esd_seed1.json"
run "${nb[@]}" --methods esd --seed 2 --set "$fresh" --json "$out/miniworld_neighbours_esd_seed2.json"
run "${nb[@]}" --methods esd --seed 1 --set "$(pool 4 2)" --json "$out/miniworld_neighbours_esd_pool_2x4_seed1.json"
run "${nb[@]}" --methods esd --seed 2 --set "$(pool 4 2)" --json "$out/miniworld_neighbours_esd_pool_2x4_seed2.json"
# AGE with trajectories of its own for 8 candidate targets per period instead of the erased concept's.
run "${nb[@]}" --methods age --set "$(pool 4 2 ', "pool_candidates": 8')" --json "$out/miniworld_neighbours_age_pool_2x4_c8.json"
for seed in 1 2 3; do
    run "${nb[@]}" --methods age --seed $seed --set "$(pool 4 2 ', "pool_candidates": 8')" \
        --json "$out/miniworld_neighbours_age_pool_2x4_c8_seed$seed.json"
done
# ESD without fresh noisiest latents (its default).
f0='{"pool_refreshes": 4, "pool_trajectories": 2, "pool_fresh_steps": 0}'
for seed in 0 1 2; do
    run "${nb[@]}" --methods esd --seed $seed --set "$f0" --json "$out/miniworld_neighbours_esd_pool_2x4_f0_seed$seed.json"
done
run --task styles --methods esd --images-per-concept 8 --set "$f0" --json "$out/miniworld_styles_esd_pool_2x4_f0.json"
run --task objects --methods esd --steps 1000 --set '{"lr": 3e-4, "pool_refreshes": 4, "pool_trajectories": 2, "pool_fresh_steps": 0}' \
    --json "$out/miniworld_objects_1000steps_esd_pool_2x4_f0.json"
# EAP without fresh noisiest latents (its default too), one concept per run and at 1000 steps.
for seed in 0 1 2 3; do
    run "${nb[@]}" --methods eap --seed $seed --set "$f0" --json "$out/miniworld_neighbours_eap_pool_2x4_f0_seed$seed.json"
done
for seed in 0 1; do
    run --task objects --methods eap --splits 2 --steps 1000 --seed $seed \
        --set '{"lr": 3e-4, "pool_refreshes": 4, "pool_trajectories": 2, "pool_fresh_steps": 0}' \
        --json "$out/miniworld_objects_1000steps_eap_pool_2x4_f0_seed$seed.json"
done
# AGE with the pool for its target search only (its default), and with a 4x larger shared pool (seeds 0-1).
so='{"pool_refreshes": 4, "pool_search_only": true, "joint_step": false}'
for seed in 0 1 2 3; do
    run "${nb[@]}" --methods age --seed $seed --set "$so" --json "$out/miniworld_neighbours_age_pool_search_only_seed$seed.json"
done
for seed in 0 1; do
    run "${nb[@]}" --methods age --seed $seed --set "$(pool 4 8)" --json "$out/miniworld_neighbours_age_pool_8x4_seed$seed.json"
done
wait

# AGE at the demo's 100 steps with the joint step on a pool re-sampled 16 times (seeds 0-2), and the alternating
# schedule on that pool (seed 0): why `auto` keeps the search-only schedule for short runs.
for seed in 0 1 2; do
    run "${nb[@]}" --methods age --seed $seed \
        --set '{"joint_step": true, "pool_refreshes": 16, "pool_search_only": false, "pool_fresh_steps": 10}' \
        --json "$out/miniworld_neighbours_age_joint_pool2x16_seed$seed.json"
done
run "${nb[@]}" --methods age --set "$(pool 16 2 ', "pool_search_only": false')" --json "$out/miniworld_neighbours_age_pool_2x16_seed0.json"

c() { python -m benchmarks.miniworld.compare_recipes "$@"; }
m=benchmarks/miniworld/results
c $m/objects.json "$out/miniworld_objects_faithful_seed1.json" --labels seed-0,seed-1
# One concept per run: EAP and AGE over seeds 0-3, ESD over seeds 0-2, AGE with candidate trajectories.
c "$m/neighbours.json,$out/miniworld_neighbours_seed1.json,$out/miniworld_neighbours_seed2.json,$out/miniworld_neighbours_seed3.json" \
    "$out/miniworld_neighbours_pool_2x4.json,$out/miniworld_neighbours_pool_2x4_seed1.json,$out/miniworld_neighbours_pool_2x4_seed2.json,$out/miniworld_neighbours_pool_2x4_seed3.json" \
    --labels faithful,pool-2x4
c "$m/neighbours.json,$out/miniworld_neighbours_esd_seed1.json,$out/miniworld_neighbours_esd_seed2.json" \
    "$out/miniworld_neighbours_pool_2x4.json,$out/miniworld_neighbours_esd_pool_2x4_seed1.json,$out/miniworld_neighbours_esd_pool_2x4_seed2.json" \
    --labels faithful,pool-2x4
c "$m/neighbours.json,$out/miniworld_neighbours_seed1.json,$out/miniworld_neighbours_seed2.json,$out/miniworld_neighbours_seed3.json" \
    "$out/miniworld_neighbours_age_pool_2x4_c8.json,$out/miniworld_neighbours_age_pool_2x4_c8_seed1.json,$out/miniworld_neighbours_age_pool_2x4_c8_seed2.json,$out/miniworld_neighbours_age_pool_2x4_c8_seed3.json" \
    --labels faithful,pool-2x4-c8
c $m/styles.json "$out/miniworld_styles_pool_2x4.json" --labels faithful,pool-2x4
c $m/implicit.json "$out/miniworld_implicit_pool_2x4.json" --labels faithful,pool-2x4
# Five concepts in 100 steps ('auto' samples fresh here).
f="$m/objects.json,$out/miniworld_objects_faithful_seed1.json,$out/miniworld_objects_esd_seed2.json"
c "$f" "$out/miniworld_objects_pool_2x4.json,$out/miniworld_objects_esd_pool_2x4_seed1.json,$out/miniworld_objects_esd_pool_2x4_seed2.json" \
    --labels faithful-3-seeds,pool-2x4-3-seeds
c "$m/objects.json,$out/miniworld_objects_faithful_seed1.json" \
    "$out/miniworld_objects_pool_2x4.json,$out/miniworld_objects_pool_2x4_eap_age_seed1.json" --labels faithful,pool-2x4
c $m/objects.json "$out/miniworld_objects_pool_4x8.json" --labels faithful,pool-4x8
c $m/objects.json "$out/miniworld_objects_original_pool.json" --labels faithful,original-pool
# 1000 steps.
c "$out/miniworld_objects_1000steps.json" "$out/miniworld_objects_1000steps_pool_2x4.json" --labels faithful,pool-2x4
c "$out/miniworld_objects_1000steps_eap.json,$out/miniworld_objects_1000steps_eap_seed1.json" \
    "$out/miniworld_objects_1000steps_eap_pool_2x4.json,$out/miniworld_objects_1000steps_eap_pool_2x4_seed1.json" --labels faithful,pool-2x4
# ESD without fresh noisiest latents: one concept per run (seeds 0-2), styles, 1000 steps.
c "$m/neighbours.json,$out/miniworld_neighbours_esd_seed1.json,$out/miniworld_neighbours_esd_seed2.json" \
    "$out/miniworld_neighbours_esd_pool_2x4_f0_seed0.json,$out/miniworld_neighbours_esd_pool_2x4_f0_seed1.json,$out/miniworld_neighbours_esd_pool_2x4_f0_seed2.json" \
    --labels faithful,pool-2x4-f0
c $m/styles.json "$out/miniworld_styles_esd_pool_2x4_f0.json" --labels faithful,pool-2x4-f0
c "$out/miniworld_objects_1000steps.json" "$out/miniworld_objects_1000steps_esd_pool_2x4_f0.json" --labels faithful,pool-2x4-f0
# AGE with the pool for its target search only (seeds 0-3) and with a larger shared pool (seeds 0-1).
c "$m/neighbours.json,$out/miniworld_neighbours_seed1.json,$out/miniworld_neighbours_seed2.json,$out/miniworld_neighbours_seed3.json" \
    "$out/miniworld_neighbours_age_pool_search_only_seed0.json,$out/miniworld_neighbours_age_pool_search_only_seed1.json,$out/miniworld_neighbours_age_pool_search_only_seed2.json,$out/miniworld_neighbours_age_pool_search_only_seed3.json" \
    --labels faithful,search-only
c "$m/neighbours.json,$out/miniworld_neighbours_seed1.json" \
    "$out/miniworld_neighbours_age_pool_8x4_seed0.json,$out/miniworld_neighbours_age_pool_8x4_seed1.json" --labels faithful,pool-8x4
# EAP without fresh noisiest latents: one concept per run (seeds 0-3), 1000 steps (seeds 0-1).
c "$m/neighbours.json,$out/miniworld_neighbours_seed1.json,$out/miniworld_neighbours_seed2.json,$out/miniworld_neighbours_seed3.json" \
    "$out/miniworld_neighbours_eap_pool_2x4_f0_seed0.json,$out/miniworld_neighbours_eap_pool_2x4_f0_seed1.json,$out/miniworld_neighbours_eap_pool_2x4_f0_seed2.json,$out/miniworld_neighbours_eap_pool_2x4_f0_seed3.json" \
    --labels faithful,pool-2x4-f0
c "$out/miniworld_objects_1000steps_eap.json,$out/miniworld_objects_1000steps_eap_seed1.json" \
    "$out/miniworld_objects_1000steps_eap_pool_2x4_f0_seed0.json,$out/miniworld_objects_1000steps_eap_pool_2x4_f0_seed1.json" \
    --labels faithful,pool-2x4-f0
