"""Single-file checkpoints with no network: the shipped configs, the rebuilt CLIP tokenizer, the architecture check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from erasure_core import ModelError
from erasure_core import single_file as sf
from erasure_core.backends.diffusers_backend import load_diffusers_model


def test_the_rebuilt_tokenizer_reads_prompts_as_clip_does(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    sf.write_tokenizer(tmp_path / "tok", sf.END)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    assert len(tokenizer) == sf.CLIP_VOCAB_SIZE
    # CLIP's ids for "a photo of a cat" (start, a, photo, of, a, cat, end), as every SD model was trained on them
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = tokenizer("cat", padding="max_length", max_length=6).input_ids
    assert padded == [49406, 2368, 49407, 49407, 49407, 49407]
    sf.write_tokenizer(tmp_path / "open", "!")  # OpenCLIP's encoders (SD2.x, SDXL's second) pad with "!" (id 0)
    assert (
        CLIPTokenizer.from_pretrained(tmp_path / "open")("cat", padding="max_length", max_length=5).input_ids[-1] == 0
    )


@pytest.mark.skipif(not os.environ.get("COMFYUI_ROOT"), reason="COMFYUI_ROOT is not set")
def test_the_rebuilt_vocabulary_is_the_one_comfyui_ships() -> None:
    """ComfyUI ships the Hugging Face CLIP tokenizer files: ours, rebuilt from the byte-pair file, are the same."""
    shipped = Path(os.environ["COMFYUI_ROOT"]) / "comfy" / "sd1_tokenizer"
    assert sf.clip_vocab() == json.loads((shipped / "vocab.json").read_text(encoding="utf-8"))
    merges = [line for line in (shipped / "merges.txt").read_text(encoding="utf-8").split("\n")[1:] if line]
    assert list(sf.clip_merges()) == merges


# Published parameter counts of each architecture's parts (UNet, VAE, text encoders).
PUBLISHED = {
    "sd1": (859_520_964, 83_653_863, {"text_encoder": 123_060_480}),
    "sd2": (865_910_724, 83_653_863, {"text_encoder": 340_387_840}),
    "sdxl": (2_567_463_684, 83_653_863, {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840}),
}


@pytest.mark.parametrize("arch", list(sf.ARCHITECTURES))
def test_shipped_configs_build_the_published_architectures(arch: str, tmp_path: Path) -> None:
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    folder = sf.write_config_folder(arch, tmp_path / arch)
    unet_size, vae_size, encoders = PUBLISHED[arch]
    with torch.device("meta"):  # no memory: only the shapes
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        assert sum(p.numel() for p in unet.parameters()) == unet_size
        assert sum(p.numel() for p in vae.parameters()) == vae_size
        for name, size in encoders.items():
            config = transformers.AutoConfig.from_pretrained(folder / name)
            model = getattr(transformers, config.architectures[0])(config)
            assert sum(p.numel() for p in model.parameters()) == size
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == sf.ARCHITECTURES[arch]["pipeline"]
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    assert scheduler.config.prediction_type == ("v_prediction" if arch == "sd2" else "epsilon")


def _keys(*prefixes: str) -> list[str]:
    return ["model.diffusion_model.input_blocks.0.0.weight", *(p + "x.weight" for p in prefixes)]


def test_the_architecture_is_read_from_the_tensor_names() -> None:
    assert sf.detect_architecture(_keys("cond_stage_model.transformer.")) == "sd1"
    assert sf.detect_architecture(_keys("cond_stage_model.model.")) == "sd2"
    xl = [*_keys("conditioner.embedders.0.", "conditioner.embedders.1."), "model.diffusion_model.label_emb.0.0.weight"]
    assert sf.detect_architecture(xl) == "sdxl"
    with pytest.raises(ModelError, match="refiner"):
        sf.detect_architecture(_keys("conditioner.embedders.1."))
    with pytest.raises(ModelError, match="inpainting"):
        sf.detect_architecture(_keys("cond_stage_model.transformer."), in_channels=9)
    with pytest.raises(ModelError, match="no Stable Diffusion UNet"):
        sf.detect_architecture(["first_stage_model.x.weight"])
    with pytest.raises(ModelError, match="no text encoder this tool knows"):
        sf.detect_architecture(_keys("something.else."))


def _clip_sized_sd1(tmp_path: Path):
    """A tiny SD1 whose text encoder has CLIP's full vocabulary (so the real tokenizer fits it), and the shipped
    sd1 configs swapped for its own."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from erasure_core.testing import save_tiny_model

    tiny = StableDiffusionPipeline.from_pretrained(save_tiny_model(tmp_path / "tiny", "sd1"))
    text = tiny.text_encoder.config.to_dict() | {"vocab_size": sf.CLIP_VOCAB_SIZE, "max_position_embeddings": 77}
    torch.manual_seed(0)
    tiny.text_encoder = CLIPTextModel(CLIPTextConfig(**text))
    spec = {
        **sf.ARCHITECTURES["sd1"],
        "unet": {"_class_name": "UNet2DConditionModel", **tiny.unet.config},
        "vae": {"_class_name": "AutoencoderKL", **tiny.vae.config},
        "text_encoder": {**text, "architectures": ["CLIPTextModel"], "model_type": "clip_text_model"},
    }
    return tiny, spec


@pytest.mark.parametrize("v_pred", [False, True])
def test_a_single_file_loads_with_no_network_and_no_config_folder(
    v_pred: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.erasure_core.backends.ldm_checkpoint import write_ldm_checkpoint

    tiny, spec = _clip_sized_sd1(tmp_path)
    monkeypatch.setitem(sf.ARCHITECTURES, "sd1", spec)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # nothing to find there: only what we ship
    position_ids = {"cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None]}
    extra = position_ids | ({"v_pred": torch.tensor([])} if v_pred else {})
    path = write_ldm_checkpoint(tiny, tmp_path / "community.safetensors", extra)

    backend = load_diffusers_model(path)
    assert backend.arch == "sd1" and backend.name == "community"
    assert backend.prediction_type == ("v_prediction" if v_pred else "epsilon")  # NoobAI-style `v_pred` marker
    assert backend.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    ids = backend.tokenizer(["cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        context = tiny.text_encoder(ids)[0]
        expected = tiny.unet(x, t, encoder_hidden_states=context).sample
        got = backend.unet(x, t, encoder_hidden_states=backend.text_encoder(ids)[0]).sample
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_prediction_type_can_be_set_where_the_files_do_not_say_it(tmp_path: Path) -> None:
    """An SD2.x 512 base single file would be read as the usual 768 v-prediction model: the user says otherwise."""
    from erasure_core.cli import build_parser
    from erasure_core.testing import save_tiny_model

    folder = save_tiny_model(tmp_path / "tiny", "sd1")
    assert load_diffusers_model(folder, prediction_type="v_prediction").prediction_type == "v_prediction"
    args = build_parser().parse_args(["erase", "--model", "m", "--erase", "x", "--prediction-type", "v_prediction"])
    assert args.prediction_type == "v_prediction"
