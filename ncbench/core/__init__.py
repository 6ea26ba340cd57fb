"""Facts every layer shares, torch-free: the metric registry (`metrics`), how a board block names its
metrics (`board`), run statuses and their severity (`status`), the Student-t interval over seeds
(`intervals`), the claims' verdict words (`verdicts`), and every config hash, trajectory key and run name (`identity`). It imports no other
ncbench layer and no torch (import-linter contract and `tests/test_core.py`)."""
