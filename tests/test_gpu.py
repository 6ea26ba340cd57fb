"""CUDA paths (run with `make test-gpu` on a machine with a GPU; skipped elsewhere)."""
from __future__ import annotations

import pytest
import torch

from ncbench.data import load_dataset
from ncbench.metrics import CollapseStats, collapse_metrics
from ncbench.models.backbone import build_backbone
from ncbench.training.evaluation import evaluate
from ncbench.training.recipe import Recipe
from ncbench.training.trainer import Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_engine_on_cuda_equals_cpu(dtype):
    g = torch.Generator().manual_seed(0)
    H = (torch.randn(5000, 64, generator=g) + 3 * torch.randn(10, 64, generator=g)[torch.arange(5000) % 10]).to(dtype)
    y = torch.arange(5000) % 10
    W = torch.randn(10, 64, generator=g)
    cpu = collapse_metrics(H, y, W)
    gpu = collapse_metrics(H.cuda(), y.cuda(), W.cuda())
    for k, v in cpu.items():
        assert gpu[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert CollapseStats(10).update(H.cuda(), y.cuda()).mean.device.type == "cuda"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trainer_amp_channels_last_on_cuda(precision):
    data, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    torch.manual_seed(0)
    model = build_backbone("resnet18", 10, 1, small_input=True)
    recipe = Recipe(epochs=2, batch_size=256, lr=0.05, precision=precision)
    logs = Trainer(model, recipe, "cuda", seed=0, progress=False).fit(data)
    assert logs[-1].accuracy > 0.9
    tr, te = evaluate(model, data, test, "cuda", progress=False)
    assert tr.n == len(data) and te.n == len(test) and te.accuracy > 0.9
    assert tr.collapse["nc1"] > 0 and tr.collapse["ncc_acc"] > 0.9


def test_integrations_on_cuda():
    """The torchmetrics metric on CUDA equals its CPU numbers; `track` runs a CUDA model on CPU batches."""
    from ncbench.integrations import NeuralCollapse, track

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3000) % 10
    W = torch.randn(10, 32, generator=g)
    H = torch.randn(3000, 32, generator=g) + 3 * W[y]
    cpu, gpu = NeuralCollapse(10, 32, classifier=(W, None)), NeuralCollapse(10, 32, classifier=(W.cuda(), None))
    gpu = gpu.to("cuda")
    for idx in torch.arange(3000).split(512):
        cpu.update(H[idx], y[idx])
        gpu.update(H[idx].cuda(), y[idx].cuda())
    assert gpu.moments.device.type == "cuda"
    want = cpu.compute()
    for k, v in gpu.compute().items():
        assert float(v) == pytest.approx(float(want[k]), rel=1e-9, abs=1e-12), k
    train = load_dataset("digits", "train")
    model = build_backbone("test_resnet", 10, 1).cuda().eval()
    loader = [train.batch(b) for b in torch.arange(len(train)).split(256)]
    got = track(model, loader)
    with torch.no_grad():
        Hc = torch.cat([model.features(x.cuda()) for x, _ in loader])
    ref = collapse_metrics(Hc, torch.cat([y for _, y in loader]).cuda(), *model.classifier(),
                           logits=model.logits(Hc))
    for k, v in ref.items():
        assert got.metrics["pre_logits"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_resume_on_cuda_restores_the_rng_and_continues(tmp_path, interrupt_after):
    """A CUDA checkpoint is loaded with map_location='cuda'; its RNG states must go back to the CPU."""
    from ncbench.training.recipe import PROTOCOLS

    data = load_dataset("digits", "train")
    recipe = Recipe(**{**PROTOCOLS["cpu-mnist5k"].to_dict(), "epochs": 2, "batch_size": 128})

    def model():
        torch.manual_seed(0)
        return build_backbone("test_vit", 10, 1, img_size=8, patch_size=2, drop_rate=0.2)

    full = model()
    Trainer(full, recipe, "cuda", seed=1, progress=False).fit(data)
    interrupt_after(1)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model(), recipe, "cuda", seed=1, progress=False).fit(data, checkpoint=tmp_path / "c.pt")
    interrupt_after(None)
    resumed = model()
    t = Trainer(resumed, recipe, "cuda", seed=1, progress=False)
    t.load_state_dict(torch.load(tmp_path / "c.pt", map_location="cuda", weights_only=True))
    t.fit(data)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)   # CUDA kernels may reorder sums
