"""Pure PyTorch models of V-JEPA 2: encoder, predictors, masks, probe, AC predictor, CEM planner.

Imports torch and numpy only: no Ray, no Prefect, no I/O beyond checkpoint files.
The checkpoint loaders are re-exported here (`modeling.load_encoder(path)` reads
an official `.pt`, a Hugging Face `vjepa2` folder or the project's own file).
"""

from modeling.ac_checkpoints import load_ac_predictor
from modeling.checkpoints import load_encoder, load_predictor, load_probe, save_model
from modeling.world_model import load_world_model

__all__ = [
    "load_ac_predictor",
    "load_encoder",
    "load_predictor",
    "load_probe",
    "load_world_model",
    "save_model",
]
