"""`NeuralCollapseCallback` in a real `lightning` run on the embedded digits (CPU, a few epochs): its
metrics reach the trainer's CSVLogger, and its tidy rows equal ncbench's own evaluation
(`ncbench.training.evaluation.evaluate`) of the checkpoints the same run saved."""
from __future__ import annotations

import math

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning_module import DigitsClassifier
from torch.utils.data import DataLoader, TensorDataset

from ncbench.data import load_dataset
from ncbench.integrations import NeuralCollapseCallback
from ncbench.metrics import SPEC_METRICS
from ncbench.models.backbone import build_backbone
from ncbench.results import load_results
from ncbench.training.evaluation import evaluate

BATCH = 128


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def loader(data):
    """Batches in the order `evaluate` reads them (same float32 forward, so equal to 1e-9)."""
    return DataLoader(TensorDataset(*data.batch(torch.arange(len(data)))), batch_size=BATCH, shuffle=False)


def fit(tmp_path, splits, epochs, callback, checkpoints=False):
    L.seed_everything(0, verbose=False)
    callbacks = [callback]
    if checkpoints:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1,
                                         every_n_epochs=1))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path / "logs"),
                        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=1, log_every_n_steps=1)
    module = DigitsClassifier()
    trainer.fit(module, loader(splits[0]), loader(splits[1]))
    return trainer, module


def test_callback_logs_and_rows_equal_ncbench_evaluation_of_the_checkpoints(tmp_path, splits, one_thread):
    cb = NeuralCollapseCallback(every_n_epochs=1, splits=("train", "val"), model_name="test_resnet",
                                dataset="digits", seed=0, run_id="lit-1")
    trainer, _ = fit(tmp_path, splits, 3, cb, checkpoints=True)
    rows = load_results(cb.results_file)
    assert cb.results_file.parent == tmp_path / "logs" / "lightning_logs" / "version_0"
    assert sorted(rows.epoch.unique()) == [1, 2, 3] and set(rows.split) == {"train", "val"}
    assert set(rows.task) == {"lightning"} and set(rows.run_id) == {"lit-1"} and set(rows.layer) == {""}
    logged = pd.read_csv(tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv")
    for split in ("train", "val"):
        for metric in SPEC_METRICS:
            col = logged[f"nc/{split}/{metric}"].dropna()
            assert len(col) == 3, f"one logged value per epoch for nc/{split}/{metric}"
            want = rows[(rows.split == split) & (rows.metric == metric)].sort_values("epoch").value
            assert col.to_numpy() == pytest.approx(want.to_numpy(), rel=1e-6)   # loggers hold float32
    for epoch in (1, 2, 3):
        state = torch.load(tmp_path / "ckpt" / f"epoch={epoch - 1}.ckpt", weights_only=True)["state_dict"]
        model = build_backbone("test_resnet", 10, 1)
        model.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        train_eval, test_eval = evaluate(model, *splits, "cpu", batch_size=BATCH, progress=False)
        for split, ev in (("train", train_eval), ("val", test_eval)):
            got = rows[(rows.split == split) & (rows.epoch == epoch)].set_index("metric").value
            assert got["accuracy"] == pytest.approx(ev.accuracy, rel=1e-12)
            assert int(rows[(rows.split == split) & (rows.epoch == epoch)].n_samples.iloc[0]) == ev.n
            for m in SPEC_METRICS:
                assert got[m] == pytest.approx(ev.collapse[m], rel=1e-9, abs=1e-12), (split, epoch, m)
    assert trainer.current_epoch == 3


def test_every_n_epochs_layers_and_custom_loader(tmp_path, splits, one_thread):
    cb = NeuralCollapseCallback(every_n_epochs=2, splits=("val", "holdout"), layers=["net.body.layer3"],
                                metrics=["nc1", "ncc_acc"], dataloaders={"holdout": loader(splits[1])},
                                out_dir=tmp_path / "nc")
    fit(tmp_path, splits, 3, cb)
    rows = load_results(tmp_path / "nc")
    assert set(rows.epoch) == {2} and set(rows.split) == {"val", "holdout"}
    assert set(rows.layer) == {"", "net.body.layer3"} and set(rows.metric) == {"nc1", "ncc_acc", "accuracy"}
    val, hold = (rows[rows.split == s].set_index(["layer", "metric"]).value for s in ("val", "holdout"))
    assert val.to_dict() == hold.to_dict(), "the same loader measured under two names"
    logged = pd.read_csv(tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv")
    assert logged["nc/val/net.body.layer3/nc1"].dropna().size == 1
    assert not math.isnan(float(logged["nc/holdout/ncc_acc"].dropna().iloc[0]))


def test_clear_errors():
    with pytest.raises(ValueError, match="every_n_epochs"):
        NeuralCollapseCallback(every_n_epochs=0)
    with pytest.raises(ValueError, match=r"splits \['test'\] have no data loader"):
        NeuralCollapseCallback(splits=("train", "test"))
