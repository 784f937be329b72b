"""Prompts of the video-language model: one builder for training, evaluation and serving.

A sample's sequence is `prefix_ids, <visual tokens>, suffix_ids, answer_ids`:

* with a chat template, the user turn's content is `VISUAL_MARK + question`; the
  rendered text is split at the mark, so the visual tokens sit inside the user
  turn, before the question, and the suffix ends with the generation prompt;
* without one, `prefix_ids` is the BOS token (when the tokenizer has one) and the
  suffix is `"Question: {question}\\nAnswer:"`.

The answer is `" " + answer` (no template) or `answer` (template), then EOS.
The tokenizer is duck-typed: `encode(text, add_special_tokens=False)`,
`bos_token_id`, `eos_token_id`, and optionally `chat_template` with
`apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

VISUAL_MARK = "<|video|>"
MAX_QUESTION_CHARS = 512


class QuestionError(ValueError):
    """A question that cannot be asked: empty, too long or not UTF-8 text."""


@dataclass(frozen=True)
class PromptParts:
    """Token ids before and after the visual tokens of one question."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]


def check_question(question: str | bytes, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """The question as clean text, or `QuestionError` saying what to fix."""
    if isinstance(question, bytes):
        try:
            question = question.decode("utf-8")
        except UnicodeDecodeError as error:
            raise QuestionError(f"question is not UTF-8 text ({error.reason})") from None
    if not isinstance(question, str):
        raise QuestionError(f"question must be text, got {type(question).__name__}")
    text = question.strip()
    if not text:
        raise QuestionError("question is empty")
    if len(text) > max_chars:
        raise QuestionError(f"question has {len(text)} characters; the limit is {max_chars}")
    if VISUAL_MARK in text or "\x00" in text:
        raise QuestionError(f"question must not contain {VISUAL_MARK!r} or NUL characters")
    return text


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer: Any, question: str) -> PromptParts:
    """Prefix and suffix ids around the visual tokens for `question` (checked first)."""
    text = check_question(question)
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": VISUAL_MARK + text}]
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        before, mark, after = str(rendered).partition(VISUAL_MARK)
        if not mark:
            raise ValueError("the tokenizer's chat template dropped the user message")
        return PromptParts(_encode(tokenizer, before), _encode(tokenizer, after))
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix = (bos,) if bos is not None else ()
    return PromptParts(prefix, _encode(tokenizer, f"Question: {text}\nAnswer:"))


def answer_ids(tokenizer: Any, answer: str) -> tuple[int, ...]:
    """Target ids of `answer`, ending with EOS; the loss covers exactly these."""
    text = answer.strip() if has_chat_template(tokenizer) else " " + answer.strip()
    eos = getattr(tokenizer, "eos_token_id", None)
    return _encode(tokenizer, text) + ((eos,) if eos is not None else ())


def normalise_answer(text: str) -> str:
    """Exact-match normal form: NFKC, lower case, no punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    words = [word for word in text.split() if word not in ("a", "an", "the")]
    return " ".join(words)


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(int(i) for i in tokenizer.encode(text, add_special_tokens=False))
