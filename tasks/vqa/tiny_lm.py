"""`vjepa make-tiny-lm`: a small Llama-architecture LM trained on a QA corpus, in HF format.

No model can be downloaded here, so tests and the demo build one: a byte-level BPE
tokenizer trained with `tokenizers` on the corpus (the training questions and answers
of a QA table), a small `LlamaConfig` model, a short causal-LM pretraining on
`"Question: ...\\nAnswer: ..."` lines (the prompt `modeling.vlm_prompts` builds when a
tokenizer has no chat template), then `save_pretrained` of model and tokenizer. The
folder loads back with `AutoModelForCausalLM.from_pretrained`, exactly as a real LM does.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tasks import progress
from tasks.training.summaries import JobSummary
from tasks.vqa.lm import load_local_lm, upload_folder
from tasks.vqa.qa import corpus_lines, read_qa

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


@dataclasses.dataclass(frozen=True)
class TinyLMConfig:
    """Tokenizer and model sizes and the pretraining recipe."""

    corpus: str
    output: str
    vocab_size: int = 512
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    steps: int = 200
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 300 or self.width % self.num_heads or min(self.steps, self.depth) < 1:
            raise ValueError(
                "vocab_size must be >= 300 (the byte alphabet), width divisible by num_heads, "
                "steps and depth >= 1"
            )


@dataclasses.dataclass(frozen=True)
class TinyLMSummary(JobSummary):
    """What `make-tiny-lm` built."""

    output: str
    vocab_size: int
    num_parameters: int
    corpus_lines: int
    steps: int
    first_loss: float
    final_loss: float
    seconds: float


def train_tokenizer(lines: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on `lines`, wrapped for `transformers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bars print bare blank lines when stderr is not a terminal
    )
    bpe.train_from_iterator(lines, trainer)
    pad, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=pad, bos_token=bos, eos_token=eos
    )


def build_model(config: TinyLMConfig, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.width,
        intermediate_size=4 * config.width,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(model_config)


def pretrain(model: Any, tokenizer: Any, lines: list[str], config: TinyLMConfig) -> list[float]:
    """Causal-LM loss on `<s> line </s>`, padded batches; the per-step losses."""
    encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]  # one batched Rust call
    ids = [[tokenizer.bos_token_id, *row, tokenizer.eos_token_id] for row in encoded]
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    losses = []
    model.train()
    progress.report("make-tiny-lm", 0, config.steps, "step")  # a first report of 1 reads as resumed
    for step in range(config.steps):
        picks = torch.randint(len(ids), (config.batch_size,), generator=generator).tolist()
        batch, mask, labels = _padded([ids[i] for i in picks], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / 20)
        loss = model(input_ids=batch, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        progress.report("make-tiny-lm", step + 1, config.steps, "step", loss=losses[-1])
    return losses


def _padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in rows)
    batch = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = torch.tensor(row)
        mask[index, : len(row)] = 1
    labels = batch.masked_fill(mask == 0, -100)
    return batch, mask, labels


def make_tiny_lm(config: TinyLMConfig) -> TinyLMSummary:
    """Train tokenizer and LM on the corpus, save both to `config.output`, load them back."""
    started = time.monotonic()
    lines = corpus_lines(read_qa(config.corpus))
    if not lines:
        raise ValueError(f"{config.corpus}: no training rows to learn a language from")
    tokenizer = train_tokenizer(lines, config.vocab_size)
    model = build_model(config, tokenizer)
    losses = pretrain(model, tokenizer, lines, config)
    with tempfile.TemporaryDirectory(prefix="vjepa-tiny-lm-") as scratch:
        folder = Path(scratch) / "lm"
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        load_local_lm(folder)  # the path every user of the folder takes
        upload_folder(folder, config.output)
    return TinyLMSummary(
        output=config.output,
        vocab_size=len(tokenizer),
        num_parameters=sum(p.numel() for p in model.parameters()),
        corpus_lines=len(lines),
        steps=config.steps,
        first_loss=losses[0],
        final_loss=losses[-1],
        seconds=time.monotonic() - started,
    )
