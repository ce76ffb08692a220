"""Where served artifacts come from: local folders or MLflow, loaded without unpickling.

* ``runs:/<run_id>/<path>``, ``models:/<name>/<version>`` and ``mlflow-artifacts:/`` URIs are
  downloaded with ``mlflow.artifacts.download_artifacts`` (``MLFLOW_TRACKING_URI`` decides the
  server) into ``$RAYRAG_HOME/serve-cache/``, through a temp folder and a rename, so replicas
  starting together never see a half-written copy.
* Model folders must hold safetensors weights. transformers loads those in preference to any
  ``*.bin`` beside them; a folder with pickled weights only is refused, because unpickling a
  file from a model registry runs whatever code it carries.
* FAISS indexes are FAISS's own binary format and inverted indexes are ``.npz`` read with
  ``allow_pickle=False`` (scipy's ``load_npz``), so the index path needs no pickle either.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError, ModelNotFoundError
from ..io import atomic_dir
from .config import REF_SCHEMES

PICKLED = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


def is_remote(ref: str) -> bool:
    return ref.startswith(REF_SCHEMES)


def fetch(ref: str) -> Path:
    """A local folder or file for ``ref``: remote references are downloaded once per host."""
    if not is_remote(ref):
        path = Path(ref).expanduser().resolve()
        if not path.exists():
            raise DataError(f"{ref}: no such file or folder")
        return path
    import mlflow

    from .. import tracking

    uri = tracking.tracking_uri()
    root = tracking.rayrag_home() / "serve-cache"
    dest = root / hashlib.sha256(f"{uri}|{ref}".encode()).hexdigest()[:24]
    if dest.exists():
        return _content_folder(dest)
    root.mkdir(parents=True, exist_ok=True)
    try:
        # A replica that finishes first wins; the others' copies are complete too and dropped.
        with atomic_dir(dest) as tmp:
            mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=str(tmp), tracking_uri=uri)
    except Exception as e:
        raise DataError(f"cannot download {ref} from MLflow at {uri}: {type(e).__name__}: {e}") from None
    return _content_folder(dest)


def _content_folder(folder: Path) -> Path:
    """download_artifacts nests the artifact under its own name: step into a lone subfolder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    while len(entries) == 1 and entries[0].is_dir():
        folder = entries[0]
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return folder


def model_ref(ref: str) -> str:
    """A name ``resolve_model`` accepts (built-in, folder, HF id), after checking its weights."""
    from ..assets import resolve_model

    local = str(fetch(ref)) if is_remote(ref) else ref
    path = Path(resolve_model(local).path)
    check_safe_weights(path)
    return local


def check_safe_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pat in PICKLED for p in folder.glob(pat))
    if pickled:
        raise ModelNotFoundError(f"{folder}: weights are pickled ({', '.join(pickled)}); convert them to "
                                 f"safetensors (model.save_pretrained(..., safe_serialization=True)); "
                                 f"pickles are never loaded by the server")
    raise ModelNotFoundError(f"{folder}: no *.safetensors weights found")
