"""VQA inputs: sample QA tables, QA table formats, LM folders, the tiny LM, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from modeling.checkpoints import CheckpointError
from modeling.vlm_prompts import PromptParts
from tasks import sample_videos as sv
from tasks.vqa.align import (
    AlignConfig,
    Example,
    check_questions,
    curriculum_batches,
    first_phase,
)
from tasks.vqa.lm import LMFolderError, load_lm
from tasks.vqa.qa import QUESTIONS, TEST, TRAIN, corpus_lines, read_qa, sample_qa_table


def labels(count: int = 16) -> pa.Table:
    return sv.labels_table(sv.make_specs(count, seconds=1.0), "/data/videos")


def test_sample_qa_holds_out_videos_and_one_phrasing_per_type() -> None:
    table = sample_qa_table(labels(16)).to_pylist()
    assert {row["type"] for row in table} == {"shape", "colour", "direction", "speed"}
    train_sources = {row["source"] for row in table if row["split"] == TRAIN}
    test_sources = {row["source"] for row in table if row["split"] == TEST}
    assert test_sources and not train_sources & test_sources
    for kind, (_, phrasings) in QUESTIONS.items():
        held = phrasings[-1]
        asked = [row for row in table if row["type"] == kind and row["question"] == held]
        assert asked and all(row["split"] == TEST for row in asked)
        assert len({r["question"] for r in table if r["type"] == kind and r["split"] == TRAIN}) > 1
    speeds = {row["answer"] for row in table if row["type"] == "speed"}
    assert speeds == set(sv.SPEEDS)


def test_speed_label_changes_the_motion_over_time() -> None:
    fast_end = sv.VideoSpec("a.mp4", "right", "disc", "red", ".mp4", 10, 160, 120, 2.0, 1)
    slow_end = sv.VideoSpec(
        "b.mp4", "right", "disc", "red", ".mp4", 10, 160, 120, 2.0, 1, speed=sv.SPEEDS[1]
    )
    for spec, early_faster in ((fast_end, False), (slow_end, True)):
        early = sv.distance(spec, 0.5, 10.0) - sv.distance(spec, 0.0, 10.0)
        late = sv.distance(spec, 2.0, 10.0) - sv.distance(spec, 1.5, 10.0)
        assert (early > late) == early_faster
        assert sv.distance(spec, 2.0, 10.0) == pytest.approx(20.0)  # same mean speed


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_qa_tables_in_text_formats_split_by_source(tmp_path: Path, suffix: str) -> None:
    rows = [
        {"source": f"v{i}.mp4", "question": "What colour?", "answer": "red", "type": "colour"}
        for i in range(8)
    ]
    path = tmp_path / f"qa{suffix}"
    if suffix == ".csv":
        path.write_text(
            "source,question,answer,type\n"
            + "".join(f"{r['source']},{r['question']},{r['answer']},{r['type']}\n" for r in rows)
        )
    else:
        import json

        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = read_qa(str(path))
    assert len(items) == 8 and {item.type for item in items} == {"colour"}
    assert {item.split for item in items} == {TRAIN, TEST}


def test_non_utf8_and_empty_questions_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "qa.csv"
    broken.write_bytes(b"source,question,answer\nv.mp4,\xff\xfe what,red\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_qa(str(broken))
    empty = tmp_path / "empty.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"source": "v.mp4", "question": "  ", "answer": "red"}]), empty
    )
    with pytest.raises(ValueError, match="row 0: question is empty"):
        check_questions(read_qa(str(empty)), str(empty))
    long = tmp_path / "long.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"source": "v.mp4", "question": "why " * 200, "answer": "x"}]), long
    )
    with pytest.raises(ValueError, match="limit is 512"):
        check_questions(read_qa(str(long)), str(long))


def test_align_config_refuses_train_lm_with_lora() -> None:
    with pytest.raises(ValueError, match="not both"):
        AlignConfig("random:tiny", "lm", "d", "q", "o", train_lm=True, lora_rank=4)


def test_curriculum_draws_the_first_epochs_from_the_first_types_only() -> None:
    prompt = PromptParts((1,), (2,))
    examples = [
        Example(i, prompt, (3,), ("colour", "direction", "speed")[i % 3]) for i in range(60)
    ]
    config = AlignConfig(
        "random:tiny", "lm", "d", "q", "o", batch_size=4,
        first_types=("direction", "speed"), first_steps=12,
    )  # fmt: skip
    source = curriculum_batches(examples, config, rank=0)
    first = [list(source(epoch)) for epoch in range(2)]  # 40 such questions: 10 batches an epoch
    assert all(examples[i].kind != "colour" for epoch in first for batch in epoch for i in batch)
    assert sum(len(epoch) for epoch in first) == 20  # 12 steps round up to two whole epochs
    later = [i for batch in source(2) for i in batch]
    assert sorted(later) == list(range(60))  # then every question, each once an epoch
    assert [list(source(e)) for e in range(3)] == [*first, list(source(2))]  # fixed: resume holds
    with pytest.raises(ValueError, match="go together"):
        AlignConfig("random:tiny", "lm", "d", "q", "o", first_types=("speed",))
    assert first_phase(examples, config) == ([i for i in range(60) if i % 3], 20)
    with pytest.raises(ValueError, match="leaves none"):
        first_phase(examples, dataclasses.replace(config, steps=20))
    only_colour = [Example(0, prompt, (3,), "colour")] * 8
    with pytest.raises(ValueError, match="types: colour"):
        curriculum_batches(only_colour, config, rank=0)


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-lm")
    qa = root / "qa.parquet"
    pq.write_table(sample_qa_table(labels(8)), qa)
    output = root / "lm"
    code = main(
        [
            "make-tiny-lm",
            "--corpus",
            str(qa),
            "--output",
            str(output),
            "--steps",
            "3",
            "--width",
            "32",
        ]
    )
    assert code == 0
    return output


def test_tiny_lm_loads_like_any_hugging_face_lm(tiny_lm_folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_lm_folder))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_lm_folder))
    assert type(lm).__name__ == "LlamaForCausalLM"
    assert lm.config.vocab_size == len(tokenizer) and tokenizer.eos_token_id is not None
    model, _tokenizer = load_lm(str(tiny_lm_folder))
    assert not any(p.requires_grad for p in model.parameters())


def test_corpus_has_context_lines_before_questions() -> None:
    items = read_qa_from(sample_qa_table(labels(8)))
    lines = corpus_lines(items)
    assert len(lines) == 2 * sum(item.split == TRAIN for item in items)
    assert all("Question:" in line for line in lines)


def read_qa_from(table: pa.Table) -> list:  # type: ignore[type-arg]
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "qa.parquet"
        pq.write_table(table, path)
        return read_qa(str(path))


def test_lm_folder_without_tokenizer_is_a_clear_error(tiny_lm_folder: Path, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_lm_folder, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(LMFolderError, match="no tokenizer"):
        load_lm(str(bare))
    with pytest.raises(LMFolderError, match=r"no config\.json"):
        load_lm(str(tmp_path))


def test_make_tiny_lm_with_a_missing_corpus_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "none.parquet"
    assert main(["make-tiny-lm", "--corpus", str(missing), "--output", str(tmp_path / "o")]) == 2


def test_eval_of_a_folder_that_is_no_model_exits_2(tmp_path: Path) -> None:
    code = main(["eval-vqa", "--model", str(tmp_path), "--data", "d", "--qa", str(tmp_path / "q")])
    assert code == 2


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)  # the CLI turns it into exit 2


def test_the_tokenizer_trains_without_writing_to_the_console(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from tasks.vqa.tiny_lm import train_tokenizer

    tokenizer = train_tokenizer(["what colour is the disc?", "red", "blue"] * 20, vocab_size=300)
    assert tokenizer.decode(tokenizer.encode("red disc")) == "red disc"
    captured = capfd.readouterr()  # tokenizers' bars printed bare blank lines into the demo's
    assert captured.out == "" and captured.err == ""


def test_accuracy_splits_into_seen_phrasings_and_the_held_out_one() -> None:
    from tasks.vqa.evaluate import accuracy_by_phrasing
    from tasks.vqa.qa import QAItem

    def item(kind: str, held: bool) -> QAItem:
        return QAItem("v.mp4", "q?", "a", kind, split=TEST, heldout_phrasing=held)

    # speed: right on 3 of 4 seen questions, wrong on both held-out ones; colour has none held out
    asked = [item("speed", False)] * 4 + [item("speed", True)] * 2 + [item("colour", False)] * 2
    right = [True, True, True, False, False, False, True, False]
    seen, held = accuracy_by_phrasing(asked, right)
    assert seen == {"colour": 0.5, "speed": 0.75}
    assert held == {"speed": 0.0}  # a type without a held-out phrasing is absent, not 0


def test_the_accuracy_artifact_shows_both_phrasing_columns() -> None:
    from flows.vqa import accuracy_rows
    from tasks.vqa.summaries import VQAEvalSummary

    summary = VQAEvalSummary(
        model="m", accuracy=0.5, majority_accuracy=0.4, per_type={"speed": 0.5},
        majority_per_type={"speed": 0.4}, majority_answers={"speed": "slows down"},
        questions_per_type={"speed": 8}, num_questions=8, heldout_phrasing_accuracy=0.0,
        confusion={}, blind=False, seconds=1.0, seen_phrasing_per_type={"speed": 0.6667},
        heldout_phrasing_per_type={"speed": 0.0},
    )  # fmt: skip
    speed, overall = accuracy_rows(summary)
    assert (speed["seen phrasings"], speed["held-out phrasing"]) == (0.667, 0.0)
    assert (overall["seen phrasings"], overall["held-out phrasing"]) == ("", 0.0)
    assert VQAEvalSummary.from_dict(summary.as_dict()) == summary


def test_the_console_line_splits_by_phrasing_and_takes_a_type_asked_only_held_out() -> None:
    from flows.commands.eval_vqa import type_line
    from tasks.vqa.summaries import VQAEvalSummary

    summary = VQAEvalSummary(
        model="m", accuracy=0.5, majority_accuracy=0.4, per_type={"speed": 0.5, "odd": 0.25},
        majority_per_type={"speed": 0.4, "odd": 0.5}, majority_answers={},
        questions_per_type={"speed": 8, "odd": 4}, num_questions=12,
        heldout_phrasing_accuracy=0.1, confusion={}, blind=False, seconds=1.0,
        seen_phrasing_per_type={"speed": 0.6667}, heldout_phrasing_per_type={"speed": 0.0,
        "odd": 0.25},
    )  # fmt: skip
    assert type_line(summary, "speed") == (
        "     speed: 0.500 (majority 0.400; seen phrasings 0.667, held-out phrasing 0.000)"
    )
    # every question of "odd" is in a held-out phrasing: no seen figure, and no KeyError
    assert (
        type_line(summary, "odd") == "       odd: 0.250 (majority 0.500; held-out phrasing 0.250)"
    )
    older = VQAEvalSummary.from_dict({**summary.as_dict(), "heldout_phrasing_per_type": {}})
    assert type_line(older, "speed") == "     speed: 0.500 (majority 0.400)"
