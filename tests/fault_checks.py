"""What every fault test checks afterwards: no temporary file or folder of ours is left."""
from __future__ import annotations

import re
from pathlib import Path

# rayrag.io names every temporary file and folder `.<destination>.<pid>-<8 hex>[suffix]`
_TEMP = re.compile(r"^\..+\.\d+-[0-9a-f]{8}")


def temp_leftovers(folder: str | Path) -> list[Path]:
    """Temporary files and folders under ``folder`` that a writer left behind."""
    return [p for p in Path(folder).rglob("*") if _TEMP.match(p.name)]
