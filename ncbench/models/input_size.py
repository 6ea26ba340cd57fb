"""A timm ViT-style model that cannot take the data's image size, answered with the fix.

timm's patch embedding asserts `Input height (8) should be divisible by patch size (16)` or
`Input height (28) doesn't match model (224)`; `input_size_hint` turns either into one line naming
`--model-kwargs img_size=H,patch_size=P` (P: the smallest divisor of H leaving at most max(4, H // 16)
patches per side: 7 for 28x28 MNIST, the setting of the ViT recipe in docs/vit.md; 2 for 8x8 digits;
timm's 16 for 224x224).
"""
from __future__ import annotations

import re

_DIVISIBLE = re.compile(r"Input (height|width) \((\d+)\) should be divisible by patch size \((\d+)\)")
_MISMATCH = re.compile(r"Input (height|width) \((\d+)\) doesn't match model \((\d+)\)")


def suggested_patch_size(size: int) -> int:
    """The smallest divisor p >= 2 of `size` with size / p <= max(4, size // 16) (`size` for a prime)."""
    grid = max(4, size // 16)
    return next((p for p in range(2, size + 1) if size % p == 0 and size // p <= grid), size)


def input_size_hint(error: BaseException, model: str) -> str | None:
    """The one-line answer to timm's image-size assertion, or None for any other error."""
    text = str(error)
    m = _DIVISIBLE.search(text)
    if m:
        size = int(m.group(2))
        problem = f"{m.group(2)}-pixel images are not divisible by its patch size {m.group(3)}"
    else:
        m = _MISMATCH.search(text)
        if m is None:
            return None
        size = int(m.group(2))
        problem = f"it is built for {m.group(3)}-pixel images, the data has {m.group(2)}"
    p = suggested_patch_size(size)
    return (f"model {model} cannot take this data set's images ({problem}): build it for them with "
            f"--model-kwargs img_size={size},patch_size={p} (Python: model_kwargs={{'img_size': {size}, "
            f"'patch_size': {p}}}); see docs/vit.md")
