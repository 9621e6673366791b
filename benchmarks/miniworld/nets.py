"""The miniature world's networks: autoencoder and UNet configs (diffusers classes, as in SD) and the classifier."""

from __future__ import annotations

import torch
from torch import nn

from .world import OBJECTS, STYLES

IMAGE_SIZE = 32
LATENT_SIZE = 8

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": IMAGE_SIZE,
}

UNET_CONFIG = {
    "sample_size": LATENT_SIZE,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (64, 128, 128),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 384,  # all-MiniLM-L6-v2 token states
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

# The SD noise schedule, so the engine's DDIM defaults (50 steps, 1..981) apply unchanged.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

STYLE_LABELS = ("plain", *STYLES)


class Classifier(nn.Module):
    """A small CNN with three heads: object (25), style (5) and night (1 logit). Trained on renders only."""

    def __init__(self, width: int = 48) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
            )  # fmt: skip

        self.body = nn.Sequential(
            block(3, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 4 * width)
        )
        self.objects = nn.Linear(4 * width, len(OBJECTS))
        self.styles = nn.Linear(4 * width, len(STYLE_LABELS))
        self.night = nn.Linear(4 * width, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features `[N, 4 * width]` of images in [-1, 1] (used for the FID-style distance too)."""
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(images)
        return self.objects(f), self.styles(f), self.night(f).squeeze(-1)


def to_tensor(images) -> torch.Tensor:
    """uint8 [N, H, W, 3] (numpy or torch) -> float [N, 3, H, W] in [-1, 1]."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
