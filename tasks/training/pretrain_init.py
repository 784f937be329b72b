"""Where `vjepa pretrain --init` starts from: released weights or an earlier platform run.

Three sources, each read strictly by `modeling.checkpoints` (a missing, unexpected or
mis-shaped key stops the job naming the keys):

* an official V-JEPA 2 pretraining `.pt`: the online encoder from its `encoder` entry, the EMA
  target from `target_encoder` when present (else a copy of the encoder), the `predictor`;
* a Hugging Face `vjepa2` folder (`save_pretrained`): encoder and predictor, target = encoder;
* a platform run folder: its `final/encoder.safetensors` (the exported EMA target) starts both
  encoders, `final/predictor.safetensors` the predictor.

The preset comes from the checkpoint: the name of the preset whose encoder config the weights
have, or `checkpoint` when none has it (the shapes then come from the weights alone).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modeling import encoder as encoder_presets
from modeling.checkpoints import (
    CheckpointError,
    detect_layout,
    load_encoder,
    load_predictor,
    read_torch_file,
)
from modeling.encoder import EncoderConfig, VisionEncoder
from modeling.predictor import Predictor
from tasks import storage

CHECKPOINT_PRESET = "checkpoint"  # the encoder's shapes match no named preset
RUN_ENCODER = ("final", "encoder.safetensors")
RUN_PREDICTOR = ("final", "predictor.safetensors")


@dataclass
class InitModels:
    """Online encoder, EMA target encoder and predictor to start pretraining from."""

    encoder: VisionEncoder
    target: VisionEncoder
    predictor: Predictor


def run_files(folder: Path) -> tuple[Path, Path] | None:
    encoder, predictor = folder.joinpath(*RUN_ENCODER), folder.joinpath(*RUN_PREDICTOR)
    return (encoder, predictor) if encoder.is_file() and predictor.is_file() else None


def _official_entries(path: Path) -> set[str]:
    payload = read_torch_file(path)
    return set(payload) if isinstance(payload, dict) else set()


def load_init(path: str | Path) -> InitModels:
    """The three models of a local `.pt`, HF folder or run folder (see the module docstring)."""
    source = Path(path)
    run = run_files(source) if source.is_dir() else None
    if run is not None:
        encoder = load_encoder(run[0])
        target = copy.deepcopy(encoder)
        predictor = load_predictor(run[1])
    elif detect_layout(source) == "official":
        entries = _official_entries(source)
        if "encoder" not in entries or "predictor" not in entries:
            raise CheckpointError(
                f"{source}: a pretraining checkpoint needs 'encoder' and 'predictor' entries "
                f"(found {sorted(entries)})"
            )
        encoder = load_encoder(source, entry="encoder")
        has_target = "target_encoder" in entries  # the EMA target, else it starts as the encoder
        target = (
            load_encoder(source, entry="target_encoder") if has_target else copy.deepcopy(encoder)
        )
        predictor = load_predictor(source)
    else:  # Hugging Face folder (detect_layout raised for anything else)
        encoder = load_encoder(source)
        target = copy.deepcopy(encoder)
        predictor = load_predictor(source)
    if predictor.config.encoder_width != encoder.config.width:
        raise CheckpointError(
            f"{source}: the predictor reads {predictor.config.encoder_width}-wide features, "
            f"the encoder makes {encoder.config.width}-wide ones"
        )
    return InitModels(encoder.train(), target.eval(), predictor.train())


def local_init(uri: str, scratch: str | Path) -> Path:
    """A local path of the --init source (an `s3://` file or folder is downloaded)."""
    if not storage.is_remote(uri):
        return Path(storage.local_path(uri))
    return storage.download(uri, scratch)


def preset_of(config: EncoderConfig) -> str:
    """The named preset with exactly this encoder config, else `checkpoint`."""
    for name, make in encoder_presets.PRESETS.items():
        if make() == config:
            return name
    return CHECKPOINT_PRESET


def resolve_preset(init: str, requested: str | None) -> str:
    """The preset of `init`, after loading it strictly once (so bad keys stop the command before
    Ray starts); a `requested` preset that disagrees is an error."""
    with tempfile.TemporaryDirectory(prefix="vjepa-init-") as scratch:
        path = local_init(init, scratch)
        if not path.exists():
            raise FileNotFoundError(f"--init checkpoint not found: {init}")
        found = preset_of(load_init(path).encoder.config)
    if requested is not None and requested != found:
        held = f"the {found} preset" if found != CHECKPOINT_PRESET else "no named preset"
        raise ValueError(
            f"--preset {requested} disagrees with the --init checkpoint, whose encoder is "
            f"{held}; drop --preset (it comes from the checkpoint)"
        )
    return found
