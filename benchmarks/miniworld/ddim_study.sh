#!/usr/bin/env bash
# A 25-step DDIM schedule for the training latents instead of the reference's 50 (docs/speed.md, "A shorter sampling
# schedule"): AGE's default since, and ESD's where the latent pool serves the latents (`"ddim_steps": "auto"`),
# checked against the faithful recipe and the 50-step default on the miniature world; EAP was measured too and keeps
# 50. Each run is an `evaluate` report in benchmarks/results/, compared with `compare_recipes` against
# pool_study.sh's and steps_study.sh's reports. Single-threaded runs, two at a time, take about 4 hours on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/results
tmp=$(mktemp -d)
export OMP_NUM_THREADS=1
run() { python -m benchmarks.miniworld.evaluate --device cpu --out-dir "$tmp" "$@"; }
d25='{"ddim_steps": 25}'
nb=(--task neighbours --erase apple,car,house --images-per-concept 8)

# One concept per run, the demo's 100 steps: AGE and EAP over seeds 0-3, ESD over seeds 0-4 (its 50-step default
# has seeds 0-3; the faithful ESD runs seeds 0-2, and 3-4 from the ESD section below).
for seed in 0 1 2 3; do
    run "${nb[@]}" --methods age --seed $seed --set "$d25" --json "$out/miniworld_neighbours_age_ddim25_seed$seed.json" &
    run "${nb[@]}" --methods eap --seed $seed --set "$d25" --json "$out/miniworld_neighbours_eap_ddim25_seed$seed.json"
    wait
done
for seed in 0 1 2 3 4; do
    run "${nb[@]}" --methods esd --seed $seed --set "$d25" --json "$out/miniworld_neighbours_esd_ddim25_seed$seed.json"
done
run "${nb[@]}" --methods esd --seed 3 --set '{"pool_refreshes": 4, "pool_trajectories": 2, "pool_fresh_steps": 0}' \
    --json "$out/miniworld_neighbours_esd_pool_2x4_f0_seed3.json"
# One concept per run at the SD step count (500 steps at lr 6e-4; AGE takes its joint step there), and ESD's
# 50-step default with seed 1 beside steps_study.sh's seed 0.
run "${nb[@]}" --methods esd --steps 500 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_neighbours_500steps_esd_ddim25_seed0.json" &
run "${nb[@]}" --methods esd --steps 500 --seed 1 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_neighbours_500steps_esd_ddim25_seed1.json"
wait
run "${nb[@]}" --methods esd --steps 500 --seed 1 --set '{"lr": 6e-4, "ddim_steps": 50}' \
    --json "$out/miniworld_neighbours_500steps_esd_seed1.json"
run "${nb[@]}" --methods eap --steps 500 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_neighbours_500steps_eap_ddim25.json" &
run "${nb[@]}" --methods age --steps 500 --set '{"lr": 6e-4, "ddim_steps": 25, "pool_fresh_steps": 10}' \
    --json "$out/miniworld_neighbours_500steps_age_ddim25.json"
wait
# Five concepts per run: AGE at 100 steps (4 splits, seeds 0-1), and at 500 steps on splits 1-2 (seeds 0-1; the
# 50-step default with seed 1 beside steps_study.sh's seed 0).
run --task objects --methods age --set "$d25" --json "$out/miniworld_objects_age_ddim25.json" &
run --task objects --methods age --seed 1 --set "$d25" --json "$out/miniworld_objects_age_ddim25_seed1.json"
wait
run --task objects --methods age --splits 2 --steps 500 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_objects_500steps_age_ddim25.json" &
run --task objects --methods age --splits 2 --steps 500 --seed 1 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_objects_500steps_age_ddim25_seed1.json"
wait
run --task objects --methods age --splits 2 --steps 500 --seed 1 --set '{"lr": 6e-4, "ddim_steps": 50}' \
    --json "$out/miniworld_objects_500steps_age_seed1.json"

# ESD where the pool serves its latents or not: the faithful recipe with seeds 3-4 beside seeds 0-2 (one concept,
# 100 steps), five concepts per run at 100 steps (fresh latents; seeds 0-2), at 500 steps (the pool; 4 splits, seeds
# 0-1), and one concept at 500 steps with seeds 2-3, on 25 and 50 steps, with the faithful 1000 steps beside them
# (seed 4 of both too).
for seed in 3 4; do
    run "${nb[@]}" --methods esd --seed $seed --set '{"pool_refreshes": 0, "joint_step": false, "ddim_steps": 50}' \
        --json "$out/miniworld_neighbours_esd_seed$seed.json" &
done
wait
run --task objects --methods esd --set "$d25" --json "$out/miniworld_objects_esd_ddim25.json" &
run --task objects --methods esd --seed 1 --set "$d25" --json "$out/miniworld_objects_esd_ddim25_seed1.json"
wait
run --task objects --methods esd --seed 2 --set "$d25" --json "$out/miniworld_objects_esd_ddim25_seed2.json" &
for seed in 0 1; do
    run --task objects --methods esd --steps 500 --seed $seed --set '{"lr": 6e-4, "ddim_steps": 25}' \
        --json "$out/miniworld_objects_500steps_esd_ddim25$([ $seed = 0 ] || echo _seed$seed).json"
done
wait
for seed in 2 3; do
    for ddim in 25 50; do
        run "${nb[@]}" --methods esd --steps 500 --seed $seed --set "{\"lr\": 6e-4, \"ddim_steps\": $ddim}" \
            --json "$out/miniworld_neighbours_500steps_esd$([ $ddim = 50 ] || echo _ddim$ddim)_seed$seed.json" &
    done
    wait
done
for seed in 2 3 4; do
    run "${nb[@]}" --methods esd --steps 1000 --seed $seed --set '{"lr": 3e-4, "pool_refreshes": 0, "ddim_steps": 50}' \
        --json "$out/miniworld_neighbours_1000steps_esd_seed$seed.json" &
done
# A fifth seed of the 25-step default beside the faithful one (on seeds 0-3 it was 2.1 points short).
run "${nb[@]}" --methods esd --steps 500 --seed 4 --set '{"lr": 6e-4, "ddim_steps": 25}' \
    --json "$out/miniworld_neighbours_500steps_esd_ddim25_seed4.json"
wait

# AGE's fresh noisiest latents on the 25-step schedule: the noisiest 6 (`"pool_fresh_steps": 5`, the noise range the
# noisiest 11 of the 50-step schedule cover) against the noisiest 11, with the joint step (one concept at 500 steps,
# seeds 0-1) and with the alternating schedule (five concepts at 500 steps, splits 1-2, seeds 0-1). Then EAP's five
# concepts at 500 steps on the 25-step schedule (seeds 0-1), not kept.
for seed in 0 1; do
    s=$([ $seed = 0 ] || echo _seed$seed)
    run "${nb[@]}" --methods age --steps 500 --seed $seed --set '{"lr": 6e-4, "pool_fresh_steps": 5}' \
        --json "$out/miniworld_neighbours_500steps_age_fresh5$s.json" &
    run --task objects --methods age --splits 2 --steps 500 --seed $seed --set '{"lr": 6e-4, "pool_fresh_steps": 5}' \
        --json "$out/miniworld_objects_500steps_age_fresh5$s.json"
    wait
done
run "${nb[@]}" --methods age --steps 500 --seed 1 --set '{"lr": 6e-4, "pool_fresh_steps": 10}' \
    --json "$out/miniworld_neighbours_500steps_age_ddim25_seed1.json" &
for seed in 0 1; do
    run --task objects --methods eap --splits 2 --steps 500 --seed $seed --set '{"lr": 6e-4, "ddim_steps": 25}' \
        --json "$out/miniworld_objects_500steps_eap_ddim25$([ $seed = 0 ] || echo _seed$seed).json"
done
wait

m=benchmarks/miniworld/results
c() { python -m benchmarks.miniworld.compare_recipes "$@"; }
seeds() { local IFS=,; echo "$*"; }
faithful=$(seeds "$m/neighbours.json" "$out"/miniworld_neighbours_seed{1,2,3}.json)
faithful_esd=$(seeds "$m/neighbours.json" "$out"/miniworld_neighbours_esd_seed{1,2,3,4}.json)
# One concept per run, 100 steps: against the faithful recipe, then against the 50-step default.
c "$faithful" "$(seeds "$out"/miniworld_neighbours_age_ddim25_seed{0,1,2,3}.json)" --labels faithful,ddim25
c "$faithful" "$(seeds "$out"/miniworld_neighbours_eap_ddim25_seed{0,1,2,3}.json)" --labels faithful,ddim25
c "$faithful_esd" "$(seeds "$out"/miniworld_neighbours_esd_ddim25_seed{0,1,2,3,4}.json)" --labels faithful,ddim25
c "$(seeds "$out"/miniworld_neighbours_age_pool_search_only_seed{0,1,2,3}.json)" \
    "$(seeds "$out"/miniworld_neighbours_age_ddim25_seed{0,1,2,3}.json)" --labels default-50,ddim25
c "$(seeds "$out"/miniworld_neighbours_eap_pool_2x4_f0_seed{0,1,2,3}.json)" \
    "$(seeds "$out"/miniworld_neighbours_eap_ddim25_seed{0,1,2,3}.json)" --labels default-50,ddim25
c "$(seeds "$out"/miniworld_neighbours_esd_pool_2x4_f0_seed{0,1,2,3}.json)" \
    "$(seeds "$out"/miniworld_neighbours_esd_ddim25_seed{0,1,2,3}.json)" --labels default-50,ddim25
# Five concepts per run, 100 steps (AGE samples fresh there).
c "$m/objects.json,$out/miniworld_objects_faithful_seed1.json" \
    "$out/miniworld_objects_age_ddim25.json,$out/miniworld_objects_age_ddim25_seed1.json" --labels faithful,ddim25
# The SD step count against the faithful 1000 steps.
c "$out/miniworld_neighbours_1000steps_age.json" "$out/miniworld_neighbours_500steps_age_ddim25.json" \
    --labels faithful-1000,ddim25-500
c "$out/miniworld_objects_1000steps_age.json" \
    "$(seeds "$out"/miniworld_objects_500steps_age_ddim25{,_seed1}.json)" --labels faithful-1000,ddim25-500
c "$(seeds "$out"/miniworld_objects_500steps_age{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_age_ddim25{,_seed1}.json)" --labels default-50-500,ddim25-500
c "$out/miniworld_neighbours_1000steps_eap.json" "$out/miniworld_neighbours_500steps_eap_ddim25.json" \
    --labels faithful-1000,ddim25-500
# ESD: five concepts per run at 100 steps (fresh latents) and 500 (the pool), one concept at 500 (the pool).
c "$m/objects.json,$(seeds "$out"/miniworld_objects_{faithful_seed1,esd_seed2}.json)" \
    "$(seeds "$out"/miniworld_objects_esd_ddim25{,_seed1,_seed2}.json)" --labels faithful,ddim25
c "$(seeds "$out"/miniworld_objects_1000steps{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_esd_ddim25{,_seed1}.json)" --labels faithful-1000,ddim25-500
c "$(seeds "$out"/miniworld_objects_500steps_esd{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_esd_ddim25{,_seed1}.json)" --labels default-500,ddim25-500
c "$(seeds "$out"/miniworld_neighbours_1000steps_esd{,_seed1,_seed2,_seed3,_seed4}.json)" \
    "$(seeds "$out"/miniworld_neighbours_500steps_esd_ddim25_seed{0,1,2,3,4}.json)" --labels faithful-1000,ddim25-500
c "$(seeds "$out"/miniworld_neighbours_500steps{,_esd_seed1,_esd_seed2,_esd_seed3}.json)" \
    "$(seeds "$out"/miniworld_neighbours_500steps_esd_ddim25_seed{0,1,2,3}.json)" --labels default-500,ddim25-500
c "$(seeds "$out"/miniworld_neighbours_1000steps_esd{,_seed1,_seed2,_seed3}.json)" \
    "$(seeds "$out"/miniworld_neighbours_500steps{,_esd_seed1,_esd_seed2,_esd_seed3}.json)" --labels faithful-1000,default-500
# AGE's noisiest 6 latents fresh against 11 (the joint step, then the alternating schedule), and EAP's five concepts.
c "$(seeds "$out"/miniworld_neighbours_500steps_age_ddim25{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_neighbours_500steps_age_fresh5{,_seed1}.json)" --labels fresh11-500,fresh6-500
c "$out/miniworld_neighbours_1000steps_age.json" "$out/miniworld_neighbours_500steps_age_fresh5.json" \
    --labels faithful-1000,fresh6-500
c "$(seeds "$out"/miniworld_objects_500steps_age_ddim25{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_age_fresh5{,_seed1}.json)" --labels fresh11-500,fresh6-500
c "$out/miniworld_objects_1000steps_age.json" "$(seeds "$out"/miniworld_objects_500steps_age_fresh5{,_seed1}.json)" \
    --labels faithful-1000,fresh6-500
c "$(seeds "$out"/miniworld_objects_1000steps_eap{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_eap_ddim25{,_seed1}.json)" --labels faithful-1000,ddim25-500
c "$(seeds "$out"/miniworld_objects_500steps_eap{,_seed1}.json)" \
    "$(seeds "$out"/miniworld_objects_500steps_eap_ddim25{,_seed1}.json)" --labels default-500,ddim25-500
