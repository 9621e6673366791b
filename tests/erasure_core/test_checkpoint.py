"""`python -m erasure_core apply`: an erasure LoRA baked into a single-file checkpoint.

The checkpoints are the tiny diffusers models written in the single-file (ldm) layout with our own key mapping,
plus a text-encoder and a VAE tensor and a header, as community checkpoints carry them. The merged file must give
the UNet the LoRA gives in memory, and keep every other byte of what it does not merge.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from erasure_core import EraseResult, erase, export_lora, make_config
from erasure_core.backends.diffusers_backend import DiffusersBackend
from erasure_core.checkpoint import UNET_PREFIX, checkpoint_arch
from erasure_core.cli import main
from erasure_core.lora.adapter import load_lora_weights, remove_lora
from erasure_core.lora.export import read_safetensors
from erasure_core.lora.keys import diffusers_to_ldm
from tests.conftest import make_backend

OTHER = {  # what a checkpoint holds besides the UNet, and must keep as it was
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.randn(8, 4),
    "first_stage_model.decoder.conv_in.weight": torch.randn(4, 4, 3, 3),
}
_ROOT = Path(tempfile.mkdtemp(prefix="erasure-apply-"))


@functools.cache
def erased(arch: str) -> tuple[DiffusersBackend, EraseResult, Path]:
    """A short ESD run on every layer (so every kind of layer is mapped), and its LoRA file in float32."""
    backend = make_backend(arch, _ROOT / arch)
    config = make_config("esd", erase=["cat"], layers="full", steps=6, lr=1e-2, ddim_steps=4, audit_samples=0)
    result = erase(backend, config)
    return backend, result, export_lora(result, _ROOT / f"{arch}-cat.safetensors", dtype=torch.float32)


def ldm_names(backend: DiffusersBackend) -> dict[str, str]:
    names = [n for n, _ in backend.unet.named_modules() if n]
    return diffusers_to_ldm(names, backend.unet.config.layers_per_block)


def write_checkpoint(backend: DiffusersBackend, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """The backend's UNet as a single-file checkpoint would hold it (ldm paths under model.diffusion_model.)."""
    ldm = ldm_names(backend)
    tensors = {k: v.to(dtype) for k, v in OTHER.items()}
    for key, value in backend.unet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in ldm:
            tensors[f"{UNET_PREFIX}{ldm[module]}.{leaf}"] = value.detach().to(dtype).contiguous()
    save_file(tensors, str(path), {"modelspec.title": "tiny community model"})
    return path


def unet_prediction(backend: DiffusersBackend, checkpoint: Path | None = None) -> torch.Tensor:
    """The backend's prediction for "cat" on fixed latents, with the UNet weights of `checkpoint` if given."""
    x = torch.randn(2, *backend.latent_shape(), generator=torch.Generator().manual_seed(5))
    t = torch.tensor([300, 700])
    cond = backend.encode_prompts(["cat"]).repeat(2)
    if checkpoint is None:
        with torch.no_grad():
            return backend.predict_noise(x, t, cond)
    tensors, _ = read_safetensors(checkpoint)
    original = {k: v.clone() for k, v in backend.unet.state_dict().items()}
    ldm = ldm_names(backend)
    merged = {}
    for key in original:
        module, _, leaf = key.rpartition(".")
        if module in ldm:
            merged[key] = tensors[f"{UNET_PREFIX}{ldm[module]}.{leaf}"].float()
    backend.unet.load_state_dict(merged, strict=False)
    try:
        with torch.no_grad():
            return backend.predict_noise(x, t, cond)
    finally:
        backend.unet.load_state_dict(original)


def in_memory(backend: DiffusersBackend, result: EraseResult) -> torch.Tensor:
    load_lora_weights(backend.unet, result.weights)
    try:
        return unet_prediction(backend)
    finally:
        remove_lora(backend.unet)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_merged_checkpoint_gives_the_loras_model_and_keeps_everything_else(arch: str, tmp_path: Path) -> None:
    backend, result, lora = erased(arch)
    model = write_checkpoint(backend, tmp_path / "community.safetensors")
    assert checkpoint_arch(read_safetensors(model)[0]) == arch
    out = tmp_path / "erased.safetensors"
    assert main(["apply", "--model", str(model), "--lora", str(lora), "--out", str(out)]) == 0

    original, edited = unet_prediction(backend), in_memory(backend, result)
    merged = unet_prediction(backend, out)
    assert (edited - original).abs().max() > 1e-3  # the LoRA does something
    torch.testing.assert_close(merged, edited, atol=1e-4, rtol=1e-4)

    before, _ = read_safetensors(model)
    after, header = read_safetensors(out)
    assert set(after) == set(before) and all(after[k].dtype == before[k].dtype for k in before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert len(changed) == len(result.weights) and all(k.startswith(UNET_PREFIX) for k in changed)
    assert header["modelspec.title"] == "tiny community model"  # the input's header is kept
    assert '"cat"' in header["erasure_erased"] and '"strength": 1.0' in header["erasure_merged"]
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~_umask()


def test_diffusers_and_ldm_named_loras_merge_alike(tmp_path: Path) -> None:
    """An SD1 LoRA from the CLI names layers the diffusers way; one from ComfyUI or A1111 the ldm way."""
    backend, result, lora = erased("sd1")
    tensors, header = read_safetensors(lora)
    ldm = ldm_names(backend)
    renamed = {}
    for key, value in tensors.items():
        prefix, _, leaf = key.partition(".")
        module = next(m for m in ldm if "lora_unet_" + m.replace(".", "_") == prefix)
        renamed["lora_unet_" + ldm[module].replace(".", "_") + "." + leaf] = value
    ldm_lora = tmp_path / "ldm.safetensors"
    save_file(renamed, str(ldm_lora), header)
    assert not set(renamed) & set(tensors)  # the two files really name the layers differently
    model = write_checkpoint(backend, tmp_path / "model.safetensors")
    outs = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for source, out in zip((lora, ldm_lora), outs, strict=True):
        assert main(["apply", "--model", str(model), "--lora", str(source), "--out", str(out)]) == 0
    a, b = (read_safetensors(o)[0] for o in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dtype_and_strength_are_kept(tmp_path: Path) -> None:
    backend, _, lora = erased("sd1")
    model = write_checkpoint(backend, tmp_path / "fp16.safetensors", torch.float16)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    main(["apply", "--model", str(model), "--lora", str(lora), "--out", str(full)])
    main(["apply", "--model", str(model), "--lora", str(lora), "--out", str(half), "--strength", "0.5"])
    base, one, point_five = (read_safetensors(p)[0] for p in (model, full, half))
    assert all(t.dtype == torch.float16 for t in one.values())
    changed = [k for k in base if not torch.equal(base[k], one[k])]
    assert changed
    for key in changed:
        step_full = one[key].float() - base[key].float()
        step_half = point_five[key].float() - base[key].float()
        torch.testing.assert_close(step_half, step_full / 2, atol=2e-3, rtol=0.02)  # fp16 rounding of W + delta


def test_a_lora_for_another_architecture_is_refused_by_name(tmp_path: Path, capsys) -> None:
    backend, _, _ = erased("sd1")
    _, _, sdxl_lora = erased("sdxl")
    model = write_checkpoint(backend, tmp_path / "sd1.safetensors")
    out = tmp_path / "out.safetensors"
    assert main(["apply", "--model", str(model), "--lora", str(sdxl_lora), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert "made for SDXL" in message and "SD 1.x checkpoint" in message
    assert not list(tmp_path.glob("out*"))


def test_existing_output_missing_files_and_non_checkpoints_are_refused(tmp_path: Path, capsys) -> None:
    backend, _, lora = erased("sd1")
    model = write_checkpoint(backend, tmp_path / "model.safetensors")
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"mine")
    new = str(tmp_path / "new.safetensors")
    cases = {
        "already exists": ["--model", str(model), "--lora", str(lora), "--out", str(taken)],
        "never replaced": ["--model", str(model), "--lora", str(lora), "--out", str(model)],
        "Checkpoint not found": ["--model", str(tmp_path / "no.safetensors"), "--lora", str(lora), "--out", new],
        "no Stable Diffusion UNet": ["--model", str(lora), "--lora", str(lora), "--out", new],
        "must be a .safetensors": ["--model", str(model), "--lora", str(lora), "--out", str(tmp_path / "a.ckpt")],
    }
    for expected, args in cases.items():
        assert main(["apply", *args]) == 2, expected
        assert expected in capsys.readouterr().err
    assert taken.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "taken.safetensors"]


def test_a_lora_of_another_layout_is_refused(tmp_path: Path, capsys) -> None:
    backend, _, lora = erased("sd1")
    tensors, header = read_safetensors(lora)
    tensors = {k.replace("attn2_to_k", "attn3_to_k"): v for k, v in tensors.items()}  # a layer this UNet lacks
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), header)
    model = write_checkpoint(backend, tmp_path / "model.safetensors")
    assert main(["apply", "--model", str(model), "--lora", str(broken), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "have no weight in this checkpoint" in capsys.readouterr().err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_header_of_the_written_file_is_readable_by_safetensors(tmp_path: Path) -> None:
    backend, _, lora = erased("sdxl")
    model = write_checkpoint(backend, tmp_path / "m.safetensors", torch.bfloat16)
    out = tmp_path / "o.safetensors"
    main(["apply", "--model", str(model), "--lora", str(lora), "--out", str(out)])
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["erasure_method"] == "esd"
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())  # noqa: SIM118
