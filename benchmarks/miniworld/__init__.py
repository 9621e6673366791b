"""The miniature Stable Diffusion world: a renderer, a tiny latent-diffusion model and the erasure benchmark."""
