"""The autocast of a ``mixed_precision`` setting (no | bf16 | fp16): the one precision switch of
the autoencoder's and the diffusion model's training and of every generator's sampling. A module of
its own so that ``autoencoder`` (which ``components`` builds on) and the diffusion modules share it
without importing each other."""
from __future__ import annotations

import torch

PRECISIONS = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(mixed_precision: str = "no", device: str = "cpu"):
    """The autocast context of a ``mixed_precision`` setting (no | bf16 | fp16), as accelerate's
    ``Accelerator(mixed_precision=...)`` applies it: weights, optimiser state and gradients stay float32;
    matrix products and convolutions inside the block run in the lower precision. The autoencoder and
    the diffusion stages train under it, and every generator samples under it. On a CPU with bf16
    instructions (AMX, AVX-512 BF16) bf16 makes an autoencoder step 2.7x, a diffusion step 1.3x and
    sampling 2x faster (``benchmarks/bench_precision.py``); CPUs without them were not measured."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision: {mixed_precision!r}; known: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[mixed_precision]
    return torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
