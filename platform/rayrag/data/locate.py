"""Finding datasets on disk: ``--data-dir`` beats ``$RAYRAG_DATA_DIR``."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

ENV = "RAYRAG_DATA_DIR"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get(ENV)
    if not raw:
        raise DataError(f"no data directory: pass --data-dir or set {ENV} "
                        f"(it holds one folder per dataset, e.g. scifact/)")
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist (from {'--data-dir' if explicit else ENV})")
    return path


def dataset_dir(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """``<data dir>/<name>``; a path to an existing folder is accepted as the dataset itself."""
    as_path = Path(name).expanduser()
    if as_path.is_dir() and (os.sep in name or name.startswith(".")):
        return as_path.resolve()
    root = data_dir(explicit)
    path = root / name
    if not path.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(f"dataset {name!r} not found in {root} (have: {', '.join(have) or 'nothing'}); "
                        f"`rayrag data download {name}` fetches public BEIR sets where a network is available")
    return path
