"""The latent pool hands out exactly the latents a fresh partial sampling would make, at a fraction of the cost."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from erasure_core import erase, latent_pool, make_config
from erasure_core.adversarial import gumbel_sample
from erasure_core.backends.base import Conditioning
from erasure_core.defaults import (
    AGE_ALTERNATING_FRESH_STEPS,
    AGE_JOINT_FRESH_STEPS,
    AGE_JOINT_REFRESHES,
    POOL_DDIM_STEPS,
    REFERENCE_DDIM_STEPS,
)
from erasure_core.errors import ConfigError
from erasure_core.latent_pool import LatentPool, PoolPrompt
from erasure_core.sampling import ddim_sample, full_path, timestep_at
from tests.conftest import make_backend, trained_alike

ALPHAS = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0)
SHAPE = (4, 6, 6)


class Model:
    """A cheap deterministic noise predictor that depends on the latent, the timestep and the prompt."""

    def __init__(self) -> None:
        self.calls = 0
        self.samples = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.calls += 1
        self.samples += x.shape[0]
        c = cond.context.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return 0.5 * torch.tanh(x) + 0.1 * c + 0.001 * t.view(-1, 1, 1, 1).float()


def _cond(value: float) -> Conditioning:
    return Conditioning(torch.full((1, 3, 2), value))


def _pool(
    model: Model, size: int = 3, reference: bool = False, seed: int = 0, keep_predictions: bool = False
) -> tuple[LatentPool, list]:
    generator = torch.Generator().manual_seed(seed)
    starts: list[torch.Tensor] = []

    def noise(n: int) -> torch.Tensor:
        starts.append(torch.randn((n, *SHAPE), generator=generator))
        return starts[-1]

    path = full_path(ALPHAS, 10, reference)
    generator = torch.Generator().manual_seed(1)
    pool = LatentPool(model, noise, _cond(0.0), 3.0, path, ALPHAS, size, generator, keep_predictions)
    return pool, starts


@pytest.mark.parametrize("reference", [False, True])
def test_pooled_latent_equals_a_fresh_partial_sampling_from_its_start_noise(reference: bool) -> None:
    model = Model()
    pool, starts = _pool(model, reference=reference)
    cond = _cond(0.7)
    for index in range(10):
        draw = timestep_at(index, ALPHAS, 10, reference, torch.Generator().manual_seed(index))
        x = pool.latents([PoolPrompt("erased", cond)], draw)[0]
        fresh = [ddim_sample(model, z[None], cond, _cond(0.0), 3.0, draw.path, ALPHAS)[0][0] for z in starts[0]]
        assert any(torch.allclose(x, f, atol=1e-6) for f in fresh)


def test_one_batched_sampling_per_period_serves_every_timestep() -> None:
    model = Model()
    pool, _ = _pool(model, size=2)
    prompts = [PoolPrompt("erased", _cond(0.3)), *(PoolPrompt(("word", i), _cond(i), shared=False) for i in range(3))]
    pool.prefetch(prompts)
    steps = len(pool.path) - 1
    assert model.calls == steps  # one guided call per DDIM step for all five trajectories together
    assert model.samples == steps * 2 * (2 + 3)  # guidance doubles the batch
    for index in range(10):
        pool.latents(prompts[:2], timestep_at(index, ALPHAS, 10, False, torch.Generator()))
    assert model.calls == steps  # drawing latents costs nothing more
    pool.refresh()
    pool.latents(prompts[:1], timestep_at(3, ALPHAS, 10, False, torch.Generator()))
    assert model.calls == 2 * steps  # a new period samples again, from the current model


def test_prompts_drawn_together_share_their_start_noise() -> None:
    model = Model()
    pool, _ = _pool(model, size=4)
    top = timestep_at(9, ALPHAS, 10, False, torch.Generator())  # the top timestep: the latent is the start noise
    for i in range(6):
        erased, word = pool.latents([PoolPrompt("erased", _cond(0.3)), PoolPrompt(i, _cond(-1.0), shared=False)], top)
        torch.testing.assert_close(erased, word)


def test_a_key_shows_the_first_prompt_that_asks_for_it() -> None:
    # EAP/AGE preserve the found concept on the erased concept's latents by asking for the same key with another
    # prompt; the trajectories must still show the erased concept (an earlier version sampled the second prompt).
    draw = timestep_at(5, ALPHAS, 10, False, torch.Generator())
    erased, found = _pool(Model())[0].latents(
        [PoolPrompt("erased", _cond(0.7)), PoolPrompt("erased", _cond(-2.0))], draw
    )
    alone = _pool(Model())[0].latents([PoolPrompt("erased", _cond(0.7))], draw)[0]
    torch.testing.assert_close(erased, alone)
    torch.testing.assert_close(found, erased)


def test_original_model_pool_keeps_its_predictions_at_the_latents_it_hands_out() -> None:
    model, check = Model(), Model()
    pool, _ = _pool(model, keep_predictions=True)
    cond, uncond = _cond(0.7), _cond(0.0)
    for index in range(10):
        draw = timestep_at(index, ALPHAS, 10, False, torch.Generator())
        x, known = pool.visit([PoolPrompt("erased", cond), PoolPrompt("erased", _cond(-1.0))], draw)
        t = torch.full((1,), draw.t)
        eps_uncond, eps_cond = known[0]
        torch.testing.assert_close(eps_uncond, check(x[:1], t, uncond))
        torch.testing.assert_close(eps_cond, check(x[:1], t, cond))
        assert known[1] is None  # another prompt on the same trajectories: its predictions are not known
    assert model.calls == 10  # one guided call per timestep, the last one included


def test_gumbel_sample_stays_in_the_allowed_candidates_and_trains_them() -> None:
    logits = torch.zeros(10, requires_grad=True)
    allowed = torch.zeros(10, dtype=torch.bool)
    allowed[[2, 5, 7]] = True
    generator = torch.Generator().manual_seed(0)
    picked = set()
    for _ in range(200):
        weights = gumbel_sample(logits, 2.0, True, 2, generator, allowed)
        picked.add(int(weights.argmax()))
        (weights * torch.arange(10.0)).sum().backward()
    assert picked == {2, 5, 7}
    assert logits.grad[allowed].abs().sum() > 0 and logits.grad[~allowed].abs().sum() == 0


@pytest.mark.parametrize("method", ["esd", "eap", "age"])
def test_engine_counts_the_pool_and_spends_far_less_than_fresh_sampling(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_visits = []  # latents whose original-model predictions the pool made (once each per period)
    halves = latent_pool.guided_halves
    monkeypatch.setattr(latent_pool, "guided_halves", lambda *args: first_visits.append(1) or halves(*args))
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {"k_closest": 20, "num_centers": 6, "pool_candidates": 0} if method != "esd" else {}
    settings = {"steps": 32, "ddim_steps": 10, "audit_samples": 0, **settings}
    if method == "age":
        settings["pool_search_only"] = False  # the shared pool for both of AGE's steps
    pooled = erase(backend, make_config(method, erase=["cat"], pool_refreshes=2, pool_fresh_steps=0, **settings))
    visited = len(first_visits)
    fresh = erase(backend, make_config(method, erase=["cat"], pool_refreshes=0, **settings))
    # Period 1 is sampled before the first update, while the LoRA is zero: its trajectories make 10 guided steps
    # each and their predictions are the original model's, kept. Period 2's make 9 and are not.
    sampling = 2 * 10 * 2 + 2 * 9 * 2
    assert 0 < visited <= 2 * 10  # period 2 only, at most one per stored latent: 16 draws reuse some
    if method == "esd":
        # Per step only the edited forward and its backward; 2 original predictions per latent's first visit.
        assert pooled.unet_evals == sampling + 2 * visited + 32 * 2
    if method == "age":
        # The target mixture is preserved on the erased concept's pooled latent, so the original model's c_t
        # prediction there is made once per half-step: parameter step 1 original at c_t + 2 forward + 2 backward,
        # logit step 1 edited, 1 + 1 original at c_t (differentiable in c_t), 1 + 1 edited at c_t.
        assert pooled.unet_evals == sampling + 2 * visited + 32 * (5 + 5)
    assert pooled.unet_evals < fresh.unet_evals / 2


@pytest.mark.parametrize("method", ["esd", "eap"])
def test_predictions_kept_per_pooled_latent_change_the_cost_not_the_training(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {"k_closest": 20, "num_centers": 6} if method != "esd" else {}
    config = make_config(
        method,
        erase=["cat"],
        steps=24,
        ddim_steps=10,
        audit_samples=0,
        pool_refreshes=2,
        pool_fresh_steps=0,
        **settings,
    )
    kept = erase(backend, config)
    monkeypatch.setattr(LatentPool, "_predictions", lambda self, entry, timestep, row: None)  # every step asks
    recomputed = erase(backend, config)
    assert kept.unet_evals < recomputed.unet_evals
    torch.testing.assert_close(kept.losses, recomputed.losses, rtol=1e-5, atol=1e-7)
    assert max(float(w.up.abs().max()) for w in kept.weights.values()) > 1e-4  # the LoRA has moved
    for name, weights in kept.weights.items():
        # The first period's predictions come from the sampling's batch of 4 instead of a batch of 2, which rounds
        # differently in the last bits; Adam's normalisation lifts that to about 1e-7 in near-zero weights.
        torch.testing.assert_close(weights.up, recomputed.weights[name].up, rtol=1e-5, atol=1e-6)


def test_original_model_pool_gives_esd_its_targets_for_free() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {"steps": 16, "ddim_steps": 20, "audit_samples": 0, "pool_refreshes": 1, "pool_fresh_steps": 0}
    result = erase(backend, make_config("esd", erase=["cat"], pool_model="original", **settings))
    # 2 trajectories x 20 guided evaluations x 2 (every visited latent gets its predictions), plus per step only
    # the edited forward and its backward.
    assert result.unet_evals == 2 * 20 * 2 + 16 * 2
    # With an anchor prompt the target needs the original model's prediction for it, so it is computed again.
    anchored = erase(backend, make_config("esd", erase=["cat"], pool_model="original", anchor="dog", **settings))
    assert anchored.unet_evals == 2 * 20 * 2 + 16 * 4


def test_original_model_predictions_from_the_pool_equal_a_fresh_call() -> None:
    from erasure_core.context import Draws, TrainingContext
    from erasure_core.trainer import _encode_prompts

    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config(
        "esd", erase=["cat"], ddim_steps=10, pool_refreshes=1, pool_fresh_steps=0, pool_model="original"
    )
    prompts = _encode_prompts(backend, config)
    ctx = TrainingContext(backend, config, prompts, backend.latent_shape(None))
    erased = prompts.erased_conds.select(0)
    for index in (0, 4, 9):
        draws = Draws((timestep_at(index, backend.alphas_cumprod, 10, False, torch.Generator()),))
        sampled = ctx.latents_with_predictions([PoolPrompt(("erased", 0), erased)], draws)
        eps_uncond, eps_cond = sampled.original[0]
        with torch.no_grad():
            fresh = ctx.predict(
                torch.cat([sampled.x] * 2), draws, Conditioning.cat([prompts.uncond, erased]), edited=False
            )
        torch.testing.assert_close(torch.cat([eps_uncond, eps_cond]), fresh, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fresh", [True, False])
def test_first_period_of_a_fresh_lora_keeps_its_sampling_predictions_as_the_original_models(fresh: bool) -> None:
    from erasure_core.context import Draws, TrainingContext
    from erasure_core.layers import select_modules
    from erasure_core.lora.adapter import inject_lora
    from erasure_core.trainer import _encode_prompts

    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config("esd", erase=["cat"], ddim_steps=10, pool_refreshes=2, pool_fresh_steps=0)
    prompts = _encode_prompts(backend, config)
    ctx = TrainingContext(backend, config, prompts, backend.latent_shape(None))
    params = inject_lora(backend.unet, select_modules(backend.unet.named_modules(), "xattn"), 4, 4.0)
    if not fresh:  # as a resumed LoRA: the edit is not zero
        with torch.no_grad():
            for p in params:
                p.add_(0.05)
    ctx.set_trainable(params, fresh=fresh)
    ctx.begin_step(1)
    erased = prompts.erased_conds.select(0)
    key = ("erased", 0)
    draws = Draws((timestep_at(4, backend.alphas_cumprod, 10, False, torch.Generator()),))
    ctx.pool.prefetch([PoolPrompt(key, erased)])
    kept = ctx.pool._entries[key].predictions
    assert len(kept) == (2 * 10 if fresh else 0)  # every stored latent, or none
    sampled = ctx.latents_with_predictions([PoolPrompt(key, erased)], draws)
    with torch.no_grad():
        original = ctx.predict(
            torch.cat([sampled.x] * 2), draws, Conditioning.cat([prompts.uncond, erased]), edited=False
        )
    torch.testing.assert_close(torch.cat(sampled.original[0]), original, atol=1e-5, rtol=1e-4)
    # After an update the edited model differs from the original: the next period's sampling keeps nothing.
    ctx.update_params(ctx.predict(sampled.x, draws, erased, edited=True).pow(2).mean())
    ctx.begin_step(ctx._refresh_every + 1)
    ctx.pool.prefetch([PoolPrompt(key, erased)])
    assert not ctx.pool._entries[key].predictions


def test_noisiest_draws_are_sampled_fresh_instead_of_pooled(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    sampled = []
    original = LatentPool._sample
    monkeypatch.setattr(LatentPool, "_sample", lambda self, missing: sampled.append(1) or original(self, missing))
    settings = {"steps": 12, "ddim_steps": 20, "audit_samples": 0, "pool_refreshes": 1}
    # Every draw of a 20-step schedule needs at most 19 sampling steps, so with 19 all are fresh: no pool is made.
    erase(backend, make_config("esd", erase=["cat"], pool_fresh_steps=19, **settings))
    assert not sampled
    erase(backend, make_config("esd", erase=["cat"], pool_fresh_steps=0, **settings))
    assert sampled == [1]


def test_several_latents_per_step_weight_each_by_its_own_timestep() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config("eap", erase=["cat"], steps=3, ddim_steps=10, batch_size=3, k_closest=20, num_centers=6)
    result = erase(backend, config.replace(audit_samples=0))
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    single = erase(backend, config.replace(audit_samples=0, batch_size=1))
    assert result.unet_evals > 2 * single.unet_evals  # three latents per step cost about three times one


def test_context_mse_is_the_mean_of_per_latent_weighted_errors() -> None:
    from erasure_core.context import Draws

    draws = Draws(tuple(timestep_at(i, ALPHAS, 10, False, torch.Generator()) for i in (1, 8)))
    prediction, target = torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)  # two prompts x two draws
    weights = torch.tensor([(1 - d.alpha_bar) / d.alpha_bar for d in draws.items]).repeat(2)
    expected = (weights * (prediction - target).pow(2).flatten(1).mean(1)).mean()

    class Ctx:
        config = make_config("eap", erase=["cat"])

    from erasure_core.context import TrainingContext

    torch.testing.assert_close(TrainingContext.mse(Ctx(), prediction, target, draws), expected)


@pytest.mark.parametrize(
    ("concepts", "steps", "batch", "expected"),
    [
        (1, 100, 1, 4),  # 100 / (1 x 2 x 4) = 12.5 latents per trajectory
        (1, 63, 1, 0),  # 7.9: just under 8
        (1, 64, 1, 4),
        (5, 20, 1, 0),  # five concepts, 20 steps each: 2.5
        (5, 200, 1, 4),
        (2, 20, 4, 4),  # four latents per step count as four: 2 x 20 x 4 / (2 x 2 x 4) = 10
    ],
)
def test_auto_pool_is_used_only_where_each_trajectory_serves_enough_latents(
    concepts: int, steps: int, batch: int, expected: int
) -> None:
    erase_ = [f"concept {i}" for i in range(concepts)]
    config = make_config("esd", erase=erase_, steps=steps, batch_size=batch)
    assert config.pool_refreshes == "auto"
    assert config.resolved_pool_refreshes() == expected
    assert make_config("esd", erase=erase_, steps=steps, layers="noxattn").resolved_pool_refreshes() == 0
    assert make_config("esd", erase=erase_, steps=steps, pool_refreshes=3).resolved_pool_refreshes() == 3
    assert make_config("esd", erase=erase_, steps=steps, pool_refreshes=0).resolved_pool_refreshes() == 0


@pytest.mark.parametrize(
    ("concepts", "steps", "joint", "refreshes"),
    [
        (1, 500, True, AGE_JOINT_REFRESHES),  # 500 / (1 x 2 x 16) = 15.6 latents per trajectory
        (1, 256, True, AGE_JOINT_REFRESHES),  # 8
        (1, 255, False, 4),  # just under 8 at 16 refreshes: the alternating schedule, its pool re-sampled 4 times
        (1, 100, False, 4),  # the demo's recipe
        (5, 100, False, 4),  # 100 steps for each of five concepts
        (5, 20, False, 0),
    ],
)
def test_age_takes_the_joint_step_on_a_pool_re_sampled_16_times_only_in_long_enough_runs(
    concepts: int, steps: int, joint: bool, refreshes: int
) -> None:
    erase_ = [f"concept {i}" for i in range(concepts)]
    config = make_config("age", erase=erase_, steps=steps)
    assert config.joint_step == "auto"
    assert (config.resolved_joint_step(), config.resolved_pool_refreshes()) == (joint, refreshes)
    assert not make_config("age", erase=erase_, steps=steps, layers="noxattn").resolved_joint_step()
    assert not make_config("age", erase=erase_, steps=steps, pool_refreshes=0).resolved_joint_step()
    forced = make_config("age", erase=erase_, steps=steps, joint_step=True)
    # Forced on, it re-samples its pool 16 times wherever the pool pays at all.
    assert forced.resolved_joint_step() and forced.resolved_pool_refreshes() == (
        AGE_JOINT_REFRESHES if refreshes else 0
    )
    with pytest.raises(ConfigError, match="joint_step"):
        make_config("age", erase=erase_, steps=steps, joint_step="sometimes")


@pytest.mark.parametrize(("steps", "expected"), [(500, AGE_JOINT_FRESH_STEPS), (100, AGE_ALTERNATING_FRESH_STEPS)])
def test_age_auto_fresh_latents_are_fewer_for_the_joint_step_than_for_the_alternating_schedule(
    steps: int, expected: int
) -> None:
    config = make_config("age", erase=["cat"], steps=steps)
    assert config.pool_fresh_steps == "auto" and config.resolved_pool_fresh_steps() == expected
    assert config.resolved().pool_fresh_steps == expected  # a shortened part of the run keeps the whole run's choice
    alternating = make_config("age", erase=["cat"], steps=steps, joint_step=False)
    assert alternating.resolved_pool_fresh_steps() == AGE_ALTERNATING_FRESH_STEPS
    assert make_config("age", erase=["cat"], steps=steps, pool_fresh_steps=3).resolved_pool_fresh_steps() == 3
    for method in ("esd", "eap"):  # they take every latent from the pool, 'auto' or by default
        assert make_config(method, erase=["cat"], steps=steps).resolved_pool_fresh_steps() == 0
        assert make_config(method, erase=["cat"], pool_fresh_steps="auto").resolved_pool_fresh_steps() == 0
    with pytest.raises(ConfigError, match="pool_fresh_steps"):
        make_config("age", erase=["cat"], pool_fresh_steps="often")


@pytest.mark.parametrize("value", ["sometimes", 2.5, True, -1])
def test_pool_refreshes_rejects_anything_but_a_count_or_auto(value: object) -> None:
    from erasure_core.errors import ConfigError

    with pytest.raises(ConfigError, match="pool_refreshes"):
        make_config("esd", erase=["cat"], pool_refreshes=value)


def _train_esd(backend, erase_: list[str], **settings):
    return erase(
        backend,
        make_config("esd", erase=erase_, audit_samples=0, pool_trajectories=1, until_erased=False, **settings),
    )


def test_auto_pool_trains_exactly_as_its_resolved_setting() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    settings = {"ddim_steps": 16, "pool_fresh_steps": 0}

    def run(erase_: list[str], **extra):
        return _train_esd(backend, erase_, **settings, **extra)

    one, pooled, fresh = (
        run(["cat"], steps=64),
        run(["cat"], steps=64, pool_refreshes=4),
        run(["cat"], steps=64, pool_refreshes=0),
    )
    assert trained_alike(one, pooled) and one.unet_evals < fresh.unet_evals  # 64 latents from 4 trajectories: the pool
    several = ["cat", "dog", "car", "tree", "house", "apple", "bird", "boat", "lamp"]  # 7 each: 63 / 9 / 4 < 8: fresh
    assert trained_alike(run(several, steps=7), run(several, steps=7, pool_refreshes=0))


@pytest.mark.parametrize(("concepts", "steps", "expected"), [(1, 100, POOL_DDIM_STEPS), (5, 20, REFERENCE_DDIM_STEPS)])
def test_esd_auto_schedule_is_short_only_where_the_pool_serves_the_latents(
    concepts: int, steps: int, expected: int
) -> None:
    erase_ = [f"concept {i}" for i in range(concepts)]
    config = make_config("esd", erase=erase_, steps=steps)
    assert config.ddim_steps == "auto" and config.resolved_ddim_steps() == expected
    assert config.resolved().ddim_steps == expected  # a shortened part of the run keeps the whole run's schedule
    assert (
        make_config("esd", erase=erase_, steps=steps, pool_refreshes=0).resolved_ddim_steps() == REFERENCE_DDIM_STEPS
    )
    assert make_config("esd", erase=erase_, steps=steps, pool_refreshes=2).resolved_ddim_steps() == POOL_DDIM_STEPS
    assert make_config("esd", erase=erase_, steps=steps, ddim_steps=40).resolved_ddim_steps() == 40
    # The other methods keep a fixed schedule unless asked for the rule.
    assert make_config("eap", erase=erase_, steps=steps).resolved_ddim_steps() == REFERENCE_DDIM_STEPS
    assert make_config("eap", erase=erase_, steps=steps, ddim_steps="auto").resolved_ddim_steps() == expected
    with pytest.raises(ConfigError, match="ddim_steps"):
        make_config("esd", erase=erase_, ddim_steps="short")


def test_esd_auto_schedule_trains_exactly_as_its_resolved_setting() -> None:
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))

    def run(erase_: list[str], steps: int, **extra):
        return _train_esd(backend, erase_, steps=steps, pool_fresh_steps=0, **extra)

    pooled = run(["cat"], 32)  # 32 latents from 4 trajectories: the pool, on the short schedule
    assert pooled.report()["ddim_steps"] == POOL_DDIM_STEPS
    assert trained_alike(pooled, run(["cat"], 32, ddim_steps=POOL_DDIM_STEPS))
    assert not trained_alike(pooled, run(["cat"], 32, ddim_steps=REFERENCE_DDIM_STEPS))
    several = ["cat", "dog", "car", "tree", "house"]  # 6 / 5 / 4 < 8: fresh latents, on the reference's schedule
    fresh = run(several, 6)
    assert fresh.report()["ddim_steps"] == REFERENCE_DDIM_STEPS
    assert trained_alike(fresh, run(several, 6, ddim_steps=REFERENCE_DDIM_STEPS))


def test_age_search_only_pool_samples_each_parameter_steps_latent_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from erasure_core.context import TrainingContext

    fresh_rows, pooled_visits = [], []
    sample, visit = TrainingContext.sample_latents, LatentPool.visit

    def counting_sample(self, cond, z, draw):
        fresh_rows.append(len(cond))
        return sample(self, cond, z, draw)

    def counting_visit(self, prompts, draw, predictions=True):
        pooled_visits.append(len(prompts))
        return visit(self, prompts, draw, predictions)

    monkeypatch.setattr(TrainingContext, "sample_latents", counting_sample)
    monkeypatch.setattr(LatentPool, "visit", counting_visit)
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    # The option belongs to the alternating schedule (the joint step takes one latent for both of its updates).
    settings = {
        "steps": 12,
        "ddim_steps": 10,
        "audit_samples": 0,
        "k_closest": 20,
        "num_centers": 6,
        "joint_step": False,
    }
    config = make_config("age", erase=["cat"], pool_refreshes=1, pool_fresh_steps=0, pool_search_only=True, **settings)
    result = erase(backend, config)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert fresh_rows == [1] * 12  # the erased concept's latent only: the target is preserved on it
    assert pooled_visits == [2] * 12  # every logit step's (erased, target) pair from the pool

    # Without the pool the option changes nothing: the faithful recipe samples both latents fresh at every step.
    fresh_rows.clear()
    faithful = erase(backend, make_config("age", erase=["cat"], pool_refreshes=0, pool_search_only=False, **settings))
    flagged = erase(backend, make_config("age", erase=["cat"], pool_refreshes=0, pool_search_only=True, **settings))
    assert fresh_rows[:24] == [2] * 24  # parameter and logit step of each of the 12 steps: erased and target
    assert faithful.losses == flagged.losses


def test_a_fresh_noisiest_latent_is_shared_by_prompts_that_share_a_pool_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from erasure_core.context import Draws, TrainingContext
    from erasure_core.trainer import _encode_prompts

    sampled_rows = []
    sample = TrainingContext.sample_latents
    monkeypatch.setattr(
        TrainingContext,
        "sample_latents",
        lambda self, cond, z, draw: sampled_rows.append(len(cond)) or sample(self, cond, z, draw),
    )
    backend = make_backend("sd1", Path(tempfile.mkdtemp()))
    config = make_config("esd", erase=["cat"], ddim_steps=10, pool_refreshes=1, pool_fresh_steps=3)
    prompts = _encode_prompts(backend, config)
    ctx = TrainingContext(backend, config, prompts, backend.latent_shape(None))
    erased, other = prompts.erased_conds.select(0), backend.encode_prompts(["dog"])
    noisy = Draws((timestep_at(8, backend.alphas_cumprod, 10, False, torch.Generator()),))  # 2 DDIM steps: fresh
    x = ctx.latents([PoolPrompt(("erased", 0), erased), PoolPrompt(("erased", 0), other)], noisy)
    assert sampled_rows == [1] and torch.equal(x[0], x[1])
    # Prompts of their own keys get their own latents from the same start noise, as without the pool.
    x = ctx.latents([PoolPrompt(("erased", 0), erased), PoolPrompt(("word", 1), other, shared=False)], noisy)
    assert sampled_rows == [1, 2] and not torch.equal(x[0], x[1])
