"""``rayrag data download``: fetch a public BEIR dataset zip into the data directory."""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DataError, RayragError
from .beir import load_beir

BEIR_URL = "https://public.ukp.informatik.uni-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


def download_beir(name: str, dest_root: Path, timeout: float = 30.0) -> Path:
    """Download, unzip and validate ``name`` into ``dest_root/name``; nothing is left on failure."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise DataError(f"not a BEIR dataset name: {name!r}")
    dest = dest_root / name
    if dest.exists():
        raise DataError(f"{dest} already exists; remove it first to download again")
    url = os.environ.get("RAYRAG_BEIR_URL", BEIR_URL).format(name=name)
    dest_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=dest_root))
    try:
        archive = work / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise RayragError(f"download of {url} failed: HTTP {e.code} (is {name!r} a BEIR dataset?)") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise RayragError(
                f"cannot download {url}: {reason}. No network here? Copy the BEIR folder "
                f"(corpus.jsonl, queries.jsonl, qrels/) to {dest} by hand instead."
            ) from None
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(work / "unzipped")
        except zipfile.BadZipFile:
            raise RayragError(f"{url} did not return a valid zip file") from None
        found = [p.parent for p in (work / "unzipped").rglob("corpus.jsonl")]
        if len(found) != 1:
            raise DataError(f"{url}: expected one folder with corpus.jsonl in the zip, found {len(found)}")
        splits = sorted(p.stem for p in (found[0] / "qrels").glob("*.tsv"))
        if not splits:
            raise DataError(f"{url}: the zip has no qrels/*.tsv")
        for split in splits:  # the same checks every job runs, before the folder appears
            load_beir(found[0], split)
        shutil.move(str(found[0]), str(dest))
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
