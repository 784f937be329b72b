"""Question-answer tables: the sample videos' `qa.parquet` and reading any QA table.

A QA table (parquet, CSV or JSON lines, local or `s3://`, read by `tasks.tables`) has
`source`, `question`, `answer`, and optionally `type` (question type, default `qa`),
`split` (`train` / `test`; without it videos are split by a seeded hash of their
source, as the probe splits labels) and a clip span `start` / `end` in seconds (a row
then belongs to the clips of its source that overlap the span).

The sample videos' table asks four types: two of appearance, which one frame answers
(`shape`, `colour`), and two of motion over time (`direction`, and `speed`: does the
shape speed up or slow down, which no single frame answers). Each type has several
phrasings; the last is held out (asked only about held-out videos), and a quarter of
the videos are held out altogether.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import pyarrow as pa

from tasks import storage
from tasks.tables import read_table

QA_FILE = "qa.parquet"
TRAIN, TEST = "train", "test"
DEFAULT_TYPE = "qa"

# type -> (label column of the sample videos' table, phrasings; the last one is held out)
QUESTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "shape": (
        "shape",
        (
            "What shape is the object?",
            "Which shape is moving?",
            "What is the shape of the moving thing?",
            "Name the shape you see.",
        ),
    ),
    "colour": (
        "colour",
        (
            "What colour is the object?",
            "Which colour is the moving shape?",
            "What colour is it painted?",
            "Tell me the colour of the shape.",
        ),
    ),
    "direction": (
        "direction",
        (
            "Which way does the object move?",
            "In which direction does the shape travel?",
            "Where is the shape heading?",
            "What direction is it going?",
        ),
    ),
    "speed": (
        "speed",
        (
            "Does the object speed up or slow down?",
            "Is the shape getting faster or slower?",
            "Does it accelerate or decelerate?",
            "How does its speed change over time?",
        ),
    ),
}
VISION_TYPES = tuple(QUESTIONS)  # every sample type needs the video; no question gives it away


@dataclasses.dataclass(frozen=True)
class QAItem:
    """One question about one video (or a span of it)."""

    source: str
    question: str
    answer: str
    type: str = DEFAULT_TYPE
    split: str = TRAIN
    start: float | None = None
    end: float | None = None
    heldout_phrasing: bool = False

    def covers(self, start: float, end: float) -> bool:
        """Whether a clip spanning `[start, end]` seconds belongs to this row."""
        if self.start is None or self.end is None:
            return True
        return start < self.end and end > self.start


def heldout_sources(sources: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The `fraction` of distinct sources with the smallest seeded hash (at least one), hashed
    by name relative to their shared folder: the same split wherever the videos lie."""
    names = storage.relative_names(sources)
    unique = sorted(names, key=lambda s: hashlib.sha256(f"{seed}:{names[s]}".encode()).hexdigest())
    if len(unique) < 2:
        return set()
    return set(unique[: max(1, round(fraction * len(unique)))])


def sample_qa_table(labels: pa.Table, seed: int = 0, heldout_fraction: float = 0.25) -> pa.Table:
    """`qa.parquet` rows for the sample videos' labels table (columns `source`, `video`, ...)."""
    sources = [str(source) for source in labels.column("source").to_pylist()]
    heldout = heldout_sources(sources, heldout_fraction, seed)
    rows = []
    for record in labels.to_pylist():
        split = TEST if str(record["source"]) in heldout else TRAIN
        for kind, (column, phrasings) in QUESTIONS.items():
            for index, question in enumerate(phrasings):
                held_phrasing = index == len(phrasings) - 1
                if held_phrasing and split == TRAIN:
                    continue
                rows.append(
                    {
                        "source": str(record["source"]),
                        "video": record["video"],
                        "type": kind,
                        "question": question,
                        "answer": str(record[column]),
                        "phrasing": index,
                        "heldout_phrasing": held_phrasing,
                        "split": split,
                    }
                )
    return pa.Table.from_pylist(rows)


def read_qa(uri: str, heldout_fraction: float = 0.25, seed: int = 0) -> list[QAItem]:
    """Every row of a QA table; a table without `split` is split by source (seeded hash)."""
    table = read_table(uri, columns=("source", "question", "answer"))
    names = set(table.column_names)
    records = table.to_pylist()
    if not records:
        raise ValueError(f"{uri}: the QA table has no rows")
    if "split" in names:
        bad = sorted({str(r["split"]) for r in records} - {TRAIN, TEST})
        if bad:
            raise ValueError(f"{uri}: column split must hold train or test, found {bad}")
        heldout: set[str] = set()
    else:
        heldout = heldout_sources([str(r["source"]) for r in records], heldout_fraction, seed)
    items = []
    for number, record in enumerate(records):
        if record["question"] is None or record["answer"] is None:
            raise ValueError(f"{uri}: row {number} has an empty question or answer")
        split = str(record["split"]) if "split" in names else _split(record, heldout)
        items.append(
            QAItem(
                source=str(record["source"]),
                question=_text(record["question"], uri, number),
                answer=_text(record["answer"], uri, number),
                type=str(record.get("type") or DEFAULT_TYPE),
                split=split,
                start=_seconds(record.get("start")),
                end=_seconds(record.get("end")),
                heldout_phrasing=bool(record.get("heldout_phrasing") or False),
            )
        )
    return items


def _text(value: object, uri: str, number: int) -> str:
    """A cell as text; bytes (a CSV column pyarrow could not read as UTF-8) must decode."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{uri}: row {number} is not UTF-8 text; re-save the table as UTF-8"
            ) from None
    return str(value)


def _split(record: dict[str, object], heldout: set[str]) -> str:
    return TEST if str(record["source"]) in heldout else TRAIN


def _seconds(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def corpus_lines(items: Sequence[QAItem]) -> list[str]:
    """What `make-tiny-lm` learns its text from: the training rows' questions and answers,
    each once alone and once after a context line of every answer about the same video.

    The context sits where the visual tokens will (between BOS and the question), so the
    LM learns to read what precedes the question: a 2-layer LM trained on the bare
    questions learns only the answer prior and ignores anything placed before them, and
    a projector into such a frozen LM barely learns (measured: loss flat over 400 steps).
    """
    training = [item for item in items if item.split == TRAIN]
    facts: dict[str, list[str]] = {}
    for item in training:
        answers = facts.setdefault(item.source, [])
        if item.answer not in answers:
            answers.append(item.answer)
    lines = []
    for item in training:
        question = f"Question: {item.question}\nAnswer: {item.answer}"
        lines.append(question)
        lines.append(f"{' '.join(facts[item.source])}\n{question}")
    return lines
