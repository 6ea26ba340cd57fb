"""Make `import ncbench` (repo root) and `import reference_nc` (tests/) work without installing."""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads OpenMP: see ncbench/provenance/threads.py
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")   # before scipy loads OpenBLAS: the same
# CLI runs stay in this process (monkeypatches, kinds registered by tests); tests/test_parallel_runs.py
# asks for --jobs itself.
os.environ.setdefault("NCBENCH_JOBS", "1")

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pytest


@pytest.fixture
def one_thread():
    """One torch CPU thread for the test (small batched ops; a busy 2-core box thrashes with two)."""
    from ncbench.provenance.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def interrupt_after(monkeypatch):
    """`interrupt_after(k)`: training raises KeyboardInterrupt (Ctrl-C) as epoch k+1 starts, after k
    epochs and their checkpoints; `interrupt_after(None)` trains normally again."""
    from ncbench.training.trainer import Trainer

    original = Trainer.train_epoch

    def interrupt(done: int | None) -> None:
        def dies(self, data):
            if self.epoch == done:
                raise KeyboardInterrupt
            return original(self, data)

        monkeypatch.setattr(Trainer, "train_epoch", original if done is None else dies)
    return interrupt
