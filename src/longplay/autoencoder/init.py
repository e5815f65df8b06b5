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
  softplus(-3) = 0.05), so that the sampled latent is mostly signal;
- the encoder's first convolution is scaled up by ``input_gain`` (10) and the decoder's
  last one down by ``output_gain`` (0.1). Music has an RMS of about 0.05-0.1, so without
  the gain every activation of the network would be of that size, where the Snake
  nonlinearity x + sin(x)^2 is almost the identity (a near-linear decoder cannot
  synthesise new frequencies from a 21.5 Hz latent), and where Adam's steps of about
  the learning rate soon make the biases outweigh the signal: the decoder then learns
  one average output for every input (measured on the demo corpus: with the gain the
  reconstructions of four held-out clips are nearest to their own inputs after 300
  steps; without it all four decode to the same spectrum). With it the activations
  and the latent are of order 1, which also suits the KL's unit-Gaussian prior.

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
                          initial_scale_bias: float = -3.0, input_gain: float = 10.0,
                          output_gain: float = 0.1,
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
    vae.encoder.stem.weight_g.mul_(input_gain)
    vae.decoder.head.weight_g.mul_(output_gain)
    head = vae.encoder.head
    if head.bias is not None:
        head.bias[vae.latent_dim:] = initial_scale_bias
    return vae
