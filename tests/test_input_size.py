"""timm's image-size assertions answered with the `--model-kwargs img_size=...,patch_size=...` hint."""
from __future__ import annotations

import pytest
import torch

from ncbench.models.backbone import build_backbone
from ncbench.models.input_size import input_size_hint, suggested_patch_size


def timm_error(**kwargs) -> BaseException:
    """The exception timm raises when a ViT built with `kwargs` sees a 28x28 one-channel batch."""
    model = build_backbone("test_vit", 10, 1, **kwargs)
    with pytest.raises(Exception) as e:
        model(torch.zeros(2, 1, 28, 28))
    return e.value


@pytest.mark.parametrize("kwargs", [{}, {"dynamic_img_size": False}])
def test_both_timm_size_errors_get_the_hint(kwargs):
    hint = input_size_hint(timm_error(**kwargs), "test_vit")
    assert hint is not None and "\n" not in hint
    assert "--model-kwargs img_size=28,patch_size=7" in hint and "docs/vit.md" in hint


def test_the_hinted_kwargs_build_a_model_that_takes_the_images():
    model = build_backbone("test_vit", 10, 1, img_size=28, patch_size=suggested_patch_size(28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_other_errors_get_no_hint():
    assert input_size_hint(RuntimeError("CUDA out of memory"), "test_vit") is None


def test_the_suggestions_for_the_embedded_sets_and_imagenet():
    assert (suggested_patch_size(8), suggested_patch_size(28), suggested_patch_size(224)) == (2, 7, 16)


@pytest.mark.parametrize("size", [7, 8, 28, 32, 64, 96, 224])
def test_the_suggested_patch_divides_the_image_into_a_small_grid(size):
    p = suggested_patch_size(size)
    divisors = [d for d in range(2, size + 1) if size % d == 0]
    assert size % p == 0 and p in divisors
    grid = max(4, size // 16)                                      # 4x4 for small images, 14x14 at 224
    assert size // p <= grid or p == size
    assert all(size // d > grid for d in divisors if d < p)       # the finest such grid
