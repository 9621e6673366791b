from __future__ import annotations

import torch

from erasure_core.sampling import ddim_sample, ddim_timesteps, draw_timestep, loss_weight

ALPHAS = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0)


def test_ddim_timesteps_match_the_reference_schedule() -> None:
    steps = ddim_timesteps(1000, 50)
    assert steps[:3] == [1, 21, 41] and steps[-1] == 981 and len(steps) == 50


def test_clean_draw_trains_at_the_timestep_of_its_latent() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        draw = draw_timestep(generator, ALPHAS, 50, reference_offset=False)
        assert draw.path[0] == 981 and draw.path[-1] == draw.t == 20 * draw.index + 1
        assert draw.alpha_bar == float(ALPHAS[draw.t])


def test_reference_draw_reproduces_the_two_step_offset() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        draw = draw_timestep(generator, ALPHAS, 50, reference_offset=True)
        assert draw.path[0] == 961  # the reference starts one DDIM step low
        assert 20 * draw.index <= draw.t < 20 * (draw.index + 1)
        assert draw.path[-1] == (20 * (draw.index - 2) + 1 if draw.index >= 2 else 0)  # latent two steps less noisy
        assert draw.alpha_bar == float(ALPHAS[20 * draw.index + 1])


def test_x0_weight_turns_eps_mse_into_x0_mse() -> None:
    draw = draw_timestep(torch.Generator().manual_seed(3), ALPHAS, 50, False)
    a = torch.tensor(draw.alpha_bar)
    x, eps_1, eps_2 = torch.randn(3, 4, 8, 8)
    x0 = lambda e: (x - (1 - a).sqrt() * e) / a.sqrt()  # noqa: E731
    x0_mse = torch.mean((x0(eps_1) - x0(eps_2)) ** 2)
    eps_mse = torch.mean((eps_1 - eps_2) ** 2)
    torch.testing.assert_close(x0_mse, loss_weight(draw, "x0") * eps_mse)
    assert loss_weight(draw, "eps") == 1.0


def test_ddim_with_exact_noise_recovers_the_clean_latent() -> None:
    x0 = torch.randn(1, 4, 8, 8)
    noise = torch.randn(1, 4, 8, 8)
    t0 = 981
    z = ALPHAS[t0].sqrt() * x0 + (1 - ALPHAS[t0]).sqrt() * noise

    def oracle(x, t, cond):  # predicts the true noise of x relative to x0
        a = ALPHAS[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    from erasure_core.backends.base import Conditioning

    cond = Conditioning(torch.zeros(1, 2, 3))
    path = tuple(reversed(ddim_timesteps(1000, 10)))
    out, recorded = ddim_sample(oracle, z, cond, cond, 3.0, (*path, 0), ALPHAS, record=(path[5],))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    assert set(recorded) == {path[5]}
