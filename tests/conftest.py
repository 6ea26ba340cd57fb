"""Make `import ncbench` (repo root) and `import reference_nc` (tests/) work without installing."""
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
