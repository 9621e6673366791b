#!/usr/bin/env bash
# The README's quick start as a result: the quick-start command's report (benchmarks/results/quickstart/) and its
# before/after grid (docs/images/demo-no-apple.png), then the README's tables regenerated. Under a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results/quickstart
python -m erasure_core erase --model demo --erase "apple" --out "$work/no-apple.safetensors" \
    --report benchmarks/results/quickstart/no-apple.json
cp "$work/no-apple.png" docs/images/demo-no-apple.png
python -m benchmarks.tables
