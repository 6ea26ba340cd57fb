"""timm backbones: features/classifier split, checkpoints through timm's mechanism, clear errors."""
from __future__ import annotations

import pytest
import torch

from ncbench.models.backbone import build_backbone
from ncbench.registry import UnknownNameError


def test_features_and_classifier_reproduce_the_logits():
    m = build_backbone("test_resnet", 7, 1).eval()
    x = torch.randn(4, 1, 28, 28)
    h = m.features(x)
    W, b = m.classifier()
    assert h.shape == (4, m.num_features) and W.shape == (7, m.num_features) and b.shape == (7,)
    torch.testing.assert_close(m(x), h @ W.T + b)
    h2, z = m(x, with_features=True)
    torch.testing.assert_close(h2, h) and torch.testing.assert_close(z, m(x))


def test_local_checkpoint_loads_through_timm(tmp_path):
    src = build_backbone("test_resnet", 10, 1)
    path = tmp_path / "w.pth"
    torch.save(src.body.state_dict(), path)
    dst = build_backbone("test_resnet", 10, 1, checkpoint=path)
    for k, v in src.body.state_dict().items():
        assert torch.equal(v, dst.body.state_dict()[k]), k
    assert dst.pretrained == str(path)


def test_corrupt_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="could not load the checkpoint"):
        build_backbone("test_resnet", 10, 1, checkpoint=bad)
    other = tmp_path / "vit.pth"
    torch.save(build_backbone("test_vit", 10, 1, img_size=28, patch_size=4).body.state_dict(), other)
    with pytest.raises(ValueError, match="could not load the checkpoint"):
        build_backbone("test_resnet", 10, 1, checkpoint=other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("test_resnet", 10, 1, checkpoint=tmp_path / "missing.pth")


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError, match="resnet18"):
        build_backbone("resnet181", 10)


def test_small_input_stem_keeps_resolution():
    m = build_backbone("resnet18", 10, 3, small_input=True).eval()
    assert m.body.conv1.stride == (1, 1) and isinstance(m.body.maxpool, torch.nn.Identity)
    fmap = m.body.forward_features(torch.randn(2, 3, 32, 32))
    assert fmap.shape[-2:] == (4, 4)  # 32 / 8 after three stride-2 stages
    with pytest.raises(ValueError, match="ResNet-family"):
        build_backbone("test_vit", 10, 1, img_size=28, patch_size=4, small_input=True)


def test_etf_head_gives_simplex_classifier():
    m = build_backbone("test_resnet", 5, 1, head="etf")
    W, b = m.classifier()
    G = W @ W.T
    K = 5
    target = (torch.eye(K) - 1 / K) * K / (K - 1)
    torch.testing.assert_close(G / G.diag().mean(), target, atol=1e-5, rtol=0)
    assert b is None and not any(p.requires_grad for n, p in m.head.named_parameters() if "projection" not in n)
