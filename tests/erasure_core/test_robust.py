"""The robust mode: a soft prompt kept adversarial to the edit is erased too; refused where it is not built."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from erasure_core import ConfigError, erase, make_config
from erasure_core.robust import SoftAdversary
from tests.conftest import make_backend

_ROOT = Path(tempfile.mkdtemp(prefix="erasure-robust-"))
FAST = {"lr": 1e-2, "ddim_steps": 8, "steps": 4, "audit_samples": 1}


@pytest.fixture(scope="module")
def backend():
    return make_backend("sd1", _ROOT / "sd1")


@pytest.mark.parametrize("method", ["age", "uce"])
def test_the_robust_mode_is_refused_where_it_is_not_built(method: str) -> None:
    with pytest.raises(ConfigError, match="robust mode is built for ESD and EAP"):
        make_config(method, erase=["cat"], robust=True)


def test_a_robust_run_trains_the_whole_budget_at_two_more_passes_a_step(backend) -> None:
    weights = {k: v.detach().clone() for k, v in backend.unet.state_dict().items()}
    plain = erase(backend, make_config("esd", erase=["cat"], until_erased=False, **FAST))
    robust = erase(backend, make_config("esd", erase=["cat"], robust=True, **FAST))  # until_erased stays on
    assert robust.steps_trained == 4 and "robust mode" in robust.stop_reason()
    # per step: the attack's forward and backward, the adversarial prompt's forward and backward
    assert robust.unet_evals - plain.unet_evals == 4 * 4 * plain.config.batch_size
    assert any(not torch.equal(plain.weights[k].up, robust.weights[k].up) for k in plain.weights)
    assert all(torch.equal(v, backend.unet.state_dict()[k]) for k, v in weights.items())


def test_the_adversary_is_the_concept_s_context_with_a_few_positions_set_free() -> None:
    from erasure_core.backends.base import Conditioning

    context = torch.randn(2, 6, 3)
    adversary = SoftAdversary(Conditioning(context, None, torch.tensor([3, 3])), tokens=2, lr=0.05)
    prompt = adversary.prompt(1)
    assert torch.equal(prompt.context, context[1:2]) and int(prompt.lengths) == 3
    adversary.free[1].data += 1.0
    moved = adversary.prompt(1).context
    assert torch.equal(moved[:, 0], context[1:2, 0]) and torch.equal(moved[:, 3:], context[1:2, 3:])
    assert torch.equal(moved[:, 1:3], context[1:2, 1:3] + 1.0) and prompt.context.requires_grad
