"""A variance-preserving initialisation of the VAE for training from scratch.

PyTorch's default convolution initialisation (uniform weights of variance
1 / (3 fan_in) and uniform biases) shrinks the signal by about sqrt(3) per convolution.
Through the encoder's ~20 convolutions the input's contribution to the latent falls far
below the biases' (about 0.007 against 0.18 for the demo VAE at initialisation), and far
below the posterior noise (std softplus(0) = 0.69): the decoder sees no information about
its input, learns the average spectrum, and training stalls in that collapsed state for
thousands of steps. This initialisation keeps the input in the latent from step 0:

- every weight-normalised convolution gets Gaussian directions v of variance 1 / fan_in
  and g = ||v||, so effective weights of variance 1 / fan_in (fan_in = in_channels *
  kernel for a convolution, in_channels * kernel / stride for a transposed one), and
  zero bias. (The size of v matters for training: Adam moves each element by about the
  learning rate, so directions with elements of size 1 instead of 1 / sqrt(fan_in)
  would learn tens of times more slowly.)
- the last convolution of each residual unit is scaled by ``residual_scale`` (0.1), so
  that the units start close to the identity and the depth does not grow the variance;
- the encoder head's scale channels start at ``initial_scale_bias`` (-3, posterior std
  softplus(-3) = 0.05), so that the sampled latent is mostly signal.

The effect is a starting point, not a different model: the architecture and checkpoint
layout are unchanged.
"""

from __future__ import annotations

import math

import torch

from longplay.autoencoder.blocks import ResidualUnit
from longplay.autoencoder.model import AudioVAE
from longplay.layers import WeightNormedConv, WNConvTranspose1d


@torch.no_grad()
def init_vae_for_training(vae: AudioVAE, *, residual_scale: float = 0.1,
                          initial_scale_bias: float = -3.0,
                          generator: torch.Generator | None = None) -> AudioVAE:
    """Re-initialise ``vae`` in place (see the module docstring); returns it."""
    for module in vae.modules():
        if isinstance(module, WeightNormedConv):
            v = module.weight_v  # [O, I, K] (conv) or [I, O, K] (transposed)
            if isinstance(module, WNConvTranspose1d):
                fan_in = v.shape[0] * v.shape[2] / module.stride
            else:
                fan_in = v.shape[1] * v.shape[2]
            # Directions with elements of the default's size (so that Adam's steps move
            # them as fast as with the default), and g = ||v||: effective weights of
            # variance 1 / fan_in.
            v.copy_(torch.randn(v.shape, generator=generator) / math.sqrt(fan_in))
            module.weight_g.copy_(v.flatten(1).norm(dim=1).view(-1, 1, 1))
            if module.bias is not None:
                module.bias.zero_()
    for module in vae.modules():
        if isinstance(module, ResidualUnit):
            module.conv2.weight_g.mul_(residual_scale)
    head = vae.encoder.head
    if head.bias is not None:
        head.bias[vae.latent_dim:] = initial_scale_bias
    return vae
