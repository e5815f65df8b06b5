"""longplay: long-form text-to-music generation with latent diffusion."""

__version__ = "0.1.0"
