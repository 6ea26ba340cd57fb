"""The small Lightning module the integration tests and the benchmark train: timm `test_resnet` in an
ncbench `Backbone`, cross-entropy, SGD (tests only)."""
from __future__ import annotations

import lightning as L
import torch

from ncbench.models.backbone import build_backbone


class DigitsClassifier(L.LightningModule):
    def __init__(self, in_chans: int = 1, num_classes: int = 10):
        super().__init__()
        self.net = build_backbone("test_resnet", num_classes, in_chans)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, _):
        self.log("val_loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
