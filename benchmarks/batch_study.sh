#!/usr/bin/env bash
# What a batch job costs on this machine: the example job file (examples/batch_demo.toml, two concept sets on the
# demo model and a tiny SD-shaped model) run here, then on a local Ray instance with 2 CPUs; each run's summary is
# kept in benchmarks/results/batch/ and the docs' tables are regenerated. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d examples/tiny-sd1 ] || python -m erasure_core make-tiny-model --out examples/tiny-sd1
mkdir -p benchmarks/results/batch
python -m erasure_core batch examples/batch_demo.toml --output "$work/here"
cp "$work/here/summary.json" benchmarks/results/batch/example_here.json
python -m erasure_core batch examples/batch_demo.toml --output "$work/ray" --ray auto --ray-cpus 2
cp "$work/ray/summary.json" benchmarks/results/batch/example_ray.json
python -m benchmarks.tables
