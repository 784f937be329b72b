"""Hugging Face causal-LM folders (local or `s3://`) with their tokenizer, and whole VQA models.

`load_lm(uri)` returns the LM (eval mode, frozen) and its tokenizer; a folder without a
tokenizer or without a causal-LM config is an `LMFolderError` saying what is missing.
`load_vqa_model(folder)` rebuilds a trained video-language model from the folder
`vjepa align` wrote: the encoder and LM its `vlm.json` names (or the ones given), the
LoRA adapter or full LM weights when trained, and the projector, after checking that
encoder and LM are the ones the projector was trained with.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from pathlib import Path
from typing import Any

from modeling.vlm import VideoLanguageModel
from modeling.vlm_checkpoints import VLMManifest, assemble_vlm, read_manifest
from tasks import storage

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class LMFolderError(ValueError):
    """An LM folder that cannot be used: no config, no tokenizer, not a causal LM."""


def local_folder(uri: str, scratch: str | Path) -> Path:
    """A local copy of a folder `uri` (the folder itself when already local)."""
    try:
        folder = storage.download(uri, scratch)
    except FileNotFoundError:
        raise FileNotFoundError(f"folder not found: {uri}") from None
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {uri} is a file")
    return folder


def upload_folder(local: Path, uri: str) -> str:
    """Copy a local folder to `uri` (local path or `s3://`)."""
    return storage.publish_folder(local, uri)


def check_lm_folder(folder: Path) -> None:
    """`LMFolderError` unless `folder` holds a config and a tokenizer."""
    if not (folder / "config.json").is_file():
        raise LMFolderError(f"{folder}: no config.json; pass a Hugging Face causal-LM folder")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise LMFolderError(
            f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
            "tokenizer beside the model (tokenizer.save_pretrained(folder))"
        )


def load_local_lm(folder: Path) -> tuple[Any, Any]:
    """LM and tokenizer from a local folder; the LM frozen in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_lm_folder(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as error:
        raise LMFolderError(f"{folder}: the tokenizer does not load ({error})") from error
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as error:
        raise LMFolderError(
            f"{folder}: not a causal LM that transformers loads ({error})"
        ) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm.eval().requires_grad_(False), tokenizer


def load_lm(uri: str) -> tuple[Any, Any]:
    """LM and tokenizer from a folder, local or `s3://`."""
    with tempfile.TemporaryDirectory(prefix="vjepa-lm-") as scratch:
        return load_local_lm(local_folder(uri, scratch))


@dataclasses.dataclass
class VQAModel:
    """A loaded video-language model with its tokenizer and manifest."""

    model: VideoLanguageModel
    tokenizer: Any
    manifest: VLMManifest


# `from_pretrained` builds its model under a process-wide meta-device context, so a module
# another thread builds meanwhile comes out without data ("Cannot copy out of meta tensor":
# the demo's two concurrent evaluations hit it once). Loads in one process take turns.
_BUILD_LOCK = threading.Lock()


def load_vqa_model(uri: str, encoder: str | None = None, lm: str | None = None) -> VQAModel:
    """The model `vjepa align` wrote to folder `uri`; `encoder` / `lm` override its sources.
    Safe to call from several threads at once (they load one at a time)."""
    from tasks.vqa.encoders import build_encoder

    with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix="vjepa-vqa-") as scratch:
        folder = local_folder(uri, scratch)
        manifest = read_manifest(folder)
        vision = build_encoder(encoder or manifest.encoder.source)
        language, tokenizer = load_lm(lm or manifest.lm.source)
        model = assemble_vlm(folder, vision, language, _with_adapter)
    return VQAModel(model, tokenizer, manifest)


def _with_adapter(lm: Any, adapter: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(lm, str(adapter)).eval()
