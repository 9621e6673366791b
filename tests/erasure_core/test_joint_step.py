"""AGE's joint step: one backward pass gives the parameter step's and the logit step's gradients at one point."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from erasure_core import erase, make_config
from erasure_core.backends.base import Conditioning
from erasure_core.context import Draws, TrainingContext
from erasure_core.defaults import AGE_ALTERNATING_FRESH_STEPS, AGE_JOINT_FRESH_STEPS
from erasure_core.layers import select_modules
from erasure_core.lora.adapter import inject_lora
from erasure_core.methods import age
from erasure_core.methods.search import sample_weights
from erasure_core.sampling import timestep_at
from erasure_core.trainer import _encode_prompts
from tests.conftest import make_backend, trained_alike

SEARCH = {"k_closest": 20, "num_centers": 6, "ddim_steps": 10, "audit_samples": 0}


def test_update_jointly_descends_the_loss_on_the_lora_and_ascends_it_with_the_search_term_on_the_logits() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config("age", erase=["cat"], **SEARCH)
    ctx = TrainingContext(backend, config, _encode_prompts(backend, config), backend.latent_shape(None))
    lora, logits = torch.nn.Parameter(torch.tensor([1.0, -2.0])), torch.nn.Parameter(torch.tensor([0.5, 3.0]))
    ctx._optimizers = [torch.optim.SGD([lora], lr=0.1)]
    search = torch.optim.SGD([logits], lr=0.1)
    loss = (lora * logits).sum() + lora.pow(2).sum()  # reaches the logits through a term the search ascends
    search_term = logits.pow(2).sum()  # no gradient on the LoRA
    ctx.update_jointly(loss, search_term, search)
    torch.testing.assert_close(
        lora.detach(), torch.tensor([1.0, -2.0]) - 0.1 * (torch.tensor([0.5, 3.0]) + 2 * torch.tensor([1.0, -2.0]))
    )
    torch.testing.assert_close(
        logits.detach(), torch.tensor([0.5, 3.0]) + 0.1 * (torch.tensor([1.0, -2.0]) + 2 * torch.tensor([0.5, 3.0]))
    )


@pytest.mark.parametrize("detached", [False, True])
def test_joint_step_gradients_are_the_alternating_steps_at_the_same_latent(
    monkeypatch: pytest.MonkeyPatch, detached: bool
) -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config(
        "age", erase=["cat"], pool_refreshes=0, joint_step=True, detached_erasure_term=detached, **SEARCH
    )
    prompts = _encode_prompts(backend, config)
    ctx = TrainingContext(backend, config, prompts, backend.latent_shape(None))
    state = age.prepare(ctx)
    params = inject_lora(backend.unet, select_modules(backend.unet.named_modules(), "xattn"), 4, 4.0)
    with torch.no_grad():  # a LoRA that already edits, so that the edited and original predictions differ
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ctx.set_trainable(params, fresh=False)
    logits = state.searches[0].logits
    with torch.no_grad():
        logits.copy_(torch.linspace(-1, 1, logits.numel()))

    x = ctx.noise()
    draws = Draws((timestep_at(6, backend.alphas_cumprod, 10, False, torch.Generator()),))
    monkeypatch.setattr(ctx, "draw", lambda: draws)
    monkeypatch.setattr(age, "_step_latents", lambda *_, **__: (x, x, None))
    captured: dict[str, list[torch.Tensor]] = {}

    def capture(loss: torch.Tensor, search_term: torch.Tensor | float, optimizer: torch.optim.Optimizer) -> float:
        (loss + search_term).backward()
        captured["lora"] = [p.grad.clone() for p in params]
        captured["logits"] = [logits.grad.clone()]
        return float(loss.detach())

    monkeypatch.setattr(ctx, "update_jointly", capture)
    generator_state = ctx.generator.get_state()
    age.joint_step(ctx, state)

    # The same point, computed as the alternating schedule's two steps would: the parameter step's loss with the
    # target detached, and the logit step's objective L1 + lambda * L2 (L1 without gradient when detached).
    for p in [*params, logits]:
        p.grad = None
    ctx.generator.set_state(generator_state)
    c_t = state.searches[0].embed(sample_weights(ctx, state, 0))
    erased = prompts.erased_conds.select(0)
    lam, eta = config.preserve_weight, config.negative_guidance
    original_t = ctx.predict(x, draws, c_t, edited=False)
    with torch.no_grad():
        original_e = ctx.predict(x, draws, erased, edited=False)
    edited_e, edited_t = ctx.predict(torch.cat([x, x]), draws, Conditioning.cat([erased, c_t]), edited=True).chunk(2)
    anchor = original_t.detach()
    param_loss = ctx.mse(edited_e, anchor - eta * (original_e - anchor), draws) + lam * ctx.mse(
        edited_t, anchor, draws
    )
    l1 = ctx.mse(edited_e.detach(), original_t if not detached else anchor, draws)
    objective = l1 + lam * ctx.mse(edited_t, anchor, draws)
    expected_lora = torch.autograd.grad(param_loss, params, retain_graph=True)
    (expected_logits,) = torch.autograd.grad(objective, [logits])

    assert any(float(g.abs().max()) > 0 for g in expected_lora)
    assert float(expected_logits.abs().max()) > 0
    for got, want in zip(captured["lora"], expected_lora, strict=True):
        torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(captured["logits"][0], expected_logits, atol=1e-9, rtol=1e-4)


def test_joint_step_costs_three_forwards_and_three_backwards_per_step_on_pooled_latents() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {**SEARCH, "steps": 12, "pool_refreshes": 1, "pool_fresh_steps": 0, "pool_search_only": False}
    joint = erase(backend, make_config("age", erase=["cat"], joint_step=True, **settings))
    alternating = erase(backend, make_config("age", erase=["cat"], joint_step=False, **settings))
    pool = 2 * 10 * 2  # one period's 2 trajectories x 10 guided evaluations; a fresh LoRA keeps their predictions
    assert joint.unet_evals == pool + 12 * 6
    # The reference schedule: the parameter step's 1 + 2 forwards and 2 backwards, the logit step's 3 and 2.
    assert alternating.unet_evals == pool + 12 * 10
    assert all(torch.isfinite(torch.tensor(joint.losses)))


def test_joint_step_auto_fresh_latents_train_exactly_as_their_resolved_count() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {**SEARCH, "steps": 12, "pool_refreshes": 1, "joint_step": True}

    def run(**extra):
        return erase(backend, make_config("age", erase=["cat"], **settings, **extra))

    auto = run()
    assert auto.report()["pool_fresh_steps"] == AGE_JOINT_FRESH_STEPS
    assert trained_alike(auto, run(pool_fresh_steps=AGE_JOINT_FRESH_STEPS))
    # The alternating schedule's count samples more of the noisiest latents fresh: more evaluations.
    assert auto.unet_evals < run(pool_fresh_steps=AGE_ALTERNATING_FRESH_STEPS).unet_evals
