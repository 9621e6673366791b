"""EAP's set-up on the demo model with an empty and with a filled vocabulary-distance cache (`distance_cache.py`).

    python -m benchmarks.search_cache

Runs a 2-step EAP erasure of "apple" twice on one thread with a fresh cache folder: the first run encodes the
20000-word vocabulary, the second reads the distances. Prints both wall times and the candidates each found.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from erasure_core import erase, make_config
from erasure_core.defaults import MINIWORLD_RECIPE
from erasure_core.demo import load_demo
from erasure_core.distance_cache import CACHE_ENV


def main() -> int:
    torch.set_num_threads(1)
    backend = load_demo("cpu").backend
    config = make_config("eap", erase=["apple"], **{**MINIWORLD_RECIPE, "steps": 2, "audit_samples": 0})
    with tempfile.TemporaryDirectory() as folder:
        os.environ[CACHE_ENV] = folder
        for label in ("empty cache", "filled cache"):
            start = time.perf_counter()
            result = erase(backend, config)
            print(f"{label}: {time.perf_counter() - start:.1f} s, candidates found {result.found['apple']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
