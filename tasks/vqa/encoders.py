"""The frozen encoder of a VQA model: a checkpoint URI or `random:PRESET[:SEED]`."""

from __future__ import annotations

import torch

from modeling import encoder as encoder_presets
from modeling.encoder import VisionEncoder
from tasks.training.probe import RANDOM_PREFIX
from tasks.training.probe import build_encoder as build_probe_encoder


def build_encoder(spec: str) -> VisionEncoder:
    """`random:tiny` (seed 0) or `random:tiny:SEED`, or any checkpoint `load_encoder` reads."""
    if spec.startswith(RANDOM_PREFIX):
        preset, _, seed = spec[len(RANDOM_PREFIX) :].partition(":")
        torch.manual_seed(int(seed or 0))
        return VisionEncoder(encoder_presets.preset(preset)).eval()
    return build_probe_encoder(spec, 0).eval()
