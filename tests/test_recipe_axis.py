"""Recipe as an axis: AdamW, label smoothing, squentropy, `--model-kwargs` to timm (a ViT on 28×28)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ncbench.cli import _apply_model_kwargs
from ncbench.data import load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.models.model_kwargs import parse_model_kwargs
from ncbench.training.losses import squentropy_loss
from ncbench.training.recipe import Recipe
from ncbench.training.seeding import epoch_generator
from ncbench.training.trainer import Trainer, loss_fn
from ncbench.training.trajectory import Trajectory, TrajectoryConfig


def vit(seed=0):
    torch.manual_seed(seed)
    return build_backbone("test_vit", 10, 1, img_size=8, patch_size=2)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("loss", ["ce", "squentropy"])
def test_adamw_steps_equal_torch_adamw(loss):
    """Two epochs of one full batch each: the trainer's AdamW (decoupled weight decay, betas) equals
    torch.optim.AdamW driven by hand on the same batches, loss and LR."""
    data = load_dataset("digits", "train").subset(torch.arange(64))
    recipe = Recipe(epochs=2, batch_size=64, lr=1e-3, weight_decay=0.05, schedule="constant",
                    optimizer="adamw", betas=(0.8, 0.99), loss=loss)
    a, b = vit(), vit()
    assert torch.equal(flat(a), flat(b))
    Trainer(a, recipe, seed=2, progress=False).fit(data)
    opt = torch.optim.AdamW(b.parameters(), lr=1e-3, betas=(0.8, 0.99), weight_decay=0.05)
    b.train()
    for epoch in range(2):
        order = torch.randperm(len(data), generator=epoch_generator(2, epoch))
        x, y = data.batch(order)
        opt.zero_grad()
        _h, logits = b(x, with_features=True)
        ref = F.cross_entropy(logits, y) if loss == "ce" else squentropy_loss(logits, y)
        ref.backward()
        opt.step()
    torch.testing.assert_close(flat(a), flat(b), rtol=0, atol=1e-6)
    sgd = vit()
    Trainer(sgd, Recipe(epochs=1, batch_size=64, lr=1e-3, schedule="constant"), progress=False).fit(data)
    assert not torch.allclose(flat(sgd), flat(a))


def test_label_smoothing_equals_torch_and_closed_form():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (7,), generator=g)
    got = loss_fn("ce", None, None, logits, y, 0.1)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, label_smoothing=0.1))
    # closed form: targets (1-ε)·onehot + ε/K against log-softmax
    logp = torch.log_softmax(logits, 1)
    target = 0.9 * F.one_hot(y, 5).double() + 0.1 / 5
    torch.testing.assert_close(got, -(target * logp).sum(1).mean())


def test_squentropy_matches_a_per_sample_loop():
    """Hui, Belkin & Wright 2023: CE + mean over the K−1 incorrect classes of the squared logit."""
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    ref = 0.0
    for zi, yi in zip(z.tolist(), y.tolist()):
        ce = -zi[yi] + math.log(sum(math.exp(v) for v in zi))
        ref += ce + sum(v * v for j, v in enumerate(zi) if j != yi) / 3
    assert abs(float(squentropy_loss(z, y)) - ref / 6) < 1e-12
    # its gradient is finite and it trains: the correct logit is pushed up, the others towards 0
    z.requires_grad_(True)
    squentropy_loss(z, y).backward()
    assert torch.isfinite(z.grad).all()


def test_recipe_validation_names_the_field():
    with pytest.raises(ValueError, match="recipe.optimizer"):
        Recipe(optimizer="adam")
    with pytest.raises(ValueError, match="recipe.loss"):
        Recipe(loss="hinge")
    with pytest.raises(ValueError, match="label_smoothing"):
        Recipe(label_smoothing=1.0)
    with pytest.raises(ValueError, match="applies to the ce and squentropy"):
        Recipe(loss="mse", label_smoothing=0.1)
    with pytest.raises(ValueError, match="betas"):
        Recipe(optimizer="adamw", betas=(0.9,))
    r = Recipe.from_dict({"optimizer": "adamw", "betas": [0.9, 0.95], "label_smoothing": 0.1})
    assert r.betas == (0.9, 0.95) and Recipe.from_dict(r.to_dict()) == r


def test_parse_model_kwargs_both_spellings_and_errors():
    assert parse_model_kwargs("img_size=28,patch_size=4") == {"img_size": 28, "patch_size": 4}
    assert parse_model_kwargs('{"img_size": 28, "drop_rate": 0.1}') == {"img_size": 28, "drop_rate": 0.1}
    assert parse_model_kwargs("global_pool=avg,qkv_bias=false") == {"global_pool": "avg", "qkv_bias": False}
    assert parse_model_kwargs("") == {}
    for bad, msg in [("img_size", "not key=value"), ("{bad json", "not valid JSON"), ("[1]", "not key=value"),
                     ("1x=2", "not a keyword-argument name"), ("a=1,a=2", "given twice")]:
        with pytest.raises(ValueError, match=msg):
            parse_model_kwargs(bad)


def test_cli_flag_reaches_spec_options():
    from ncbench.cli import build_parser
    from ncbench.specs import load_task

    args = build_parser().parse_args(["run", "ncc_depth_mnist5k", "--model-kwargs", "img_size=28,patch_size=4"])
    spec = load_task(args.task)
    (spec,) = _apply_model_kwargs([spec], args.model_kwargs)
    assert spec.options["model_kwargs"] == {"img_size": 28, "patch_size": 4}


def test_vit_with_model_kwargs_builds_and_trains_one_step_on_28x28(tmp_path):
    """The path the flag feeds: `TrajectoryConfig.model_kwargs` → `build_backbone` → `timm.create_model`:
    a ViT-Tiny with img_size=28, patch_size=4 (49 tokens) on MNIST-5k, one AdamW step."""
    kwargs = parse_model_kwargs("img_size=28,patch_size=4")
    cfg = TrajectoryConfig("mnist5k", "vit_tiny_patch16_224", Recipe(epochs=1, batch_size=32, lr=1e-3,
                                                                    optimizer="adamw"),
                           model_kwargs=tuple(sorted(kwargs.items())))
    model = Trajectory(cfg, tmp_path, progress=False).build_model(10, 1)
    assert model.body.patch_embed.grid_size == (7, 7)
    data = load_dataset("mnist5k", "train").subset(torch.arange(32))
    before = flat(model).clone()
    logs = Trainer(model, cfg.recipe, progress=False).fit(data)
    assert len(logs) == 1 and math.isfinite(logs[0].loss)
    assert not torch.equal(before, flat(model))


def test_cli_model_kwargs_on_a_task_without_the_option_is_a_one_line_error(capsys):
    from ncbench.cli import main

    rc = main(["run", "ufm_ce_balanced", "--model-kwargs", "img_size=28"])   # the theory tier has no backbone
    err = capsys.readouterr().err
    assert rc == 2 and "ufm_ce_balanced (ufm) take(s) no model_kwargs" in err
    assert "train_collapse" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    rc = main(["run", "train_collapse_mnist5k", "--model-kwargs", "img_size"])
    assert rc == 2 and "not key=value" in capsys.readouterr().err
