"""The miniature world's networks: autoencoder and UNet configs (diffusers classes, as in SD) and the classifier."""

from __future__ import annotations

import torch
from torch import nn

# The objects world (the demo model): 32x32 images, 8x8 latents, a three-level UNet.
OBJECTS_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": 32,
}

OBJECTS_UNET_CONFIG = {
    "sample_size": 8,
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

# The icons world: 24x24 images, an autoencoder that halves once (12x12 latents), and a two-level UNet with two
# ResBlocks per level, 16-wide heads and attention only at the coarse level and the middle (SD has it everywhere but
# the coarsest level), which keeps it trainable on two CPU cores.
ICONS_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": 24,
}

ICONS_UNET_CONFIG = {
    "sample_size": 12,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (48, 96),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 384,
    "attention_head_dim": 16,
    "norm_num_groups": 16,
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


class Classifier(nn.Module):
    """A small CNN with three heads: concept, style (with "plain") and the implicit concept (1 logit; the head is
    called `night` after the first world's). Trained on renders only."""

    def __init__(self, n_objects: int, n_styles: int, width: int = 48) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
            )  # fmt: skip

        self.body = nn.Sequential(
            block(3, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 4 * width)
        )
        self.objects = nn.Linear(4 * width, n_objects)
        self.styles = nn.Linear(4 * width, n_styles)
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
