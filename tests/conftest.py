"""Make `import ncbench` (repo root) and `import reference_nc` (tests/) work without installing."""
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """One torch CPU thread for the test (small batched ops; a busy 2-core box thrashes with two)."""
    from ncbench.threads import torch_threads

    with torch_threads(1):
        yield
