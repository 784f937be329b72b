"""A random-weight VQA model folder for serving tests and the VQA benchmark.

The language model is a real `transformers` LlamaForCausalLM from a tiny LlamaConfig with a
byte-level BPE tokenizer trained here with `tokenizers`, saved with `save_pretrained` and loaded
back by serving with `AutoModelForCausalLM` / `AutoTokenizer`: the path a real LM takes. The
encoder is the tiny preset, the projector the `mlp` kind; `vlm.json` fingerprints both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modeling.checkpoints import save_model
from modeling.encoder import VisionEncoder, tiny
from modeling.vlm import VisualProjector, mlp
from modeling.vlm_checkpoints import ComponentInfo, VLMManifest, fingerprint, save_vlm

CORPUS = [
    "Question: what colour is the square? Answer: red",
    "Question: which way does the ball move? Answer: left",
    "Question: what shape is it? Answer: circle",
    "Question: is it moving up or down? Answer: up",
    "Question: how many objects are there? Answer: two",
] * 8
LM_WIDTH = 64


def train_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(str(folder))


def make_lm(folder: Path, seed: int = 0, num_layers: int = 2) -> Path:
    """A random-weight tiny Llama and its tokenizer, saved with `save_pretrained`."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    train_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=LM_WIDTH,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        initializer_range=0.2,  # random weights that still depend on the input visibly
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def make_vqa_model(root: Path, seed: int = 0, num_layers: int = 2) -> Path:
    """`root/encoder.safetensors`, `root/lm/` and the model folder `root/vqa/` (returned)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    encoder = VisionEncoder(tiny()).eval()
    encoder_path = save_model(encoder, root / "encoder.safetensors")
    lm_path = make_lm(root / "lm", seed, num_layers)
    lm = AutoModelForCausalLM.from_pretrained(str(lm_path))
    projector = VisualProjector(mlp(encoder.config.width, LM_WIDTH, pool=2))
    manifest = VLMManifest(
        encoder=ComponentInfo(str(encoder_path), fingerprint(encoder)),
        lm=ComponentInfo(str(lm_path), fingerprint(lm)),
        projector_kind="mlp",
        image_size=64,
    )
    return save_vlm(root / "vqa", projector, manifest)
