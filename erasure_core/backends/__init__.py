"""Backends: what the trainer needs from a host's model, and the diffusers implementation."""

from .base import Backend, Conditioning

__all__ = ["Backend", "Conditioning"]
