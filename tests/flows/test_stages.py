"""Stage reuse (`flows.stages`): a rerun reuses, a change reruns that stage and later ones only,
a missing or changed output is not trusted, a failed stage leaves no manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flows.demo_config import DemoConfig
from flows.stages import Stages


@dataclasses.dataclass(frozen=True)
class Made:
    """The result of a tiny real stage: the file it wrote."""

    path: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


class Chain:
    """Three stages a -> b -> c, each writing a file from its config and its upstream's text;
    counts how often each one really ran."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: dict[str, int] = {"a": 0, "b": 0, "c": 0}
        self.prepared = 0  # how often the runtime (Ray, in the demo) was started

    def _make(self, name: str, text: str, fail: bool = False) -> Made:
        self.calls[name] += 1
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "partial").write_text("started")
        if fail:
            raise RuntimeError(f"stage {name} killed")
        (folder / "out.txt").write_text(text)
        return Made(str(folder / "out.txt"), text)

    def _prepare(self) -> None:
        self.prepared += 1

    def run(self, config: dict[str, str], force: str = "", fail: str = "") -> Stages:
        stages = Stages(
            str(self.root),
            force=lambda stage: stage == force,
            announce=print,
            prepare=self._prepare,
        )
        upstream = ""
        for name in ("a", "b", "c"):
            inputs = {"config": config[name], "upstream": stages.digests.get(upstream)}
            text = f"{config[name]}+{upstream}"
            stages.run(
                name, inputs, [str(self.root / name)], Made,
                lambda n=name, t=text: self._make(n, t, fail == n), lambda made: [made.path],
            )  # fmt: skip
            upstream = name
        return stages


CONFIG = {"a": "1", "b": "1", "c": "1"}


def test_a_rerun_reuses_every_stage_and_returns_the_same_results(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    first = chain.run(CONFIG)
    assert first.reused == [] and chain.calls == {"a": 1, "b": 1, "c": 1}
    second = chain.run(CONFIG)
    assert second.reused == ["a", "b", "c"] and chain.calls == {"a": 1, "b": 1, "c": 1}
    assert chain.prepared == 1  # a run that reuses everything starts nothing
    assert second.digests == first.digests
    manifest = json.loads((tmp_path / "stages" / "b.json").read_text())
    assert manifest["result"] == {"path": str(tmp_path / "b" / "out.txt"), "text": "1+a"}


def test_a_changed_config_reruns_that_stage_and_the_later_ones_only(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    chain.run(CONFIG)
    (tmp_path / "b" / "leftover").write_text("from the old configuration")
    changed = chain.run({**CONFIG, "b": "2"})
    assert changed.reused == ["a"] and chain.calls == {"a": 1, "b": 2, "c": 2}
    assert [o.reason for o in changed.outcomes[1:]] == ["configuration or inputs changed"] * 2
    assert not (tmp_path / "b" / "leftover").exists()  # the stage ran from scratch
    assert (tmp_path / "c" / "out.txt").read_text() == "1+b" and chain.run(CONFIG).reused == ["a"]


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_missing_or_changed_output_makes_the_stage_rerun(tmp_path: Path, damage: str) -> None:
    chain = Chain(tmp_path)
    chain.run(CONFIG)
    out = tmp_path / "b" / "out.txt"
    if damage == "delete":
        out.unlink()
    else:
        out.write_text("1+b")  # same size, other bytes
    again = chain.run(CONFIG)
    # b ran again and wrote the same bytes, so c (keyed by b's digest) is still reused
    assert again.reused == ["a", "c"] and chain.calls == {"a": 1, "b": 2, "c": 1}
    assert again.outcomes[1].reason == f"{out} {'is missing' if damage == 'delete' else 'changed'}"


def test_a_failed_stage_leaves_no_manifest_and_resumes_in_place(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    chain.run(CONFIG)
    with pytest.raises(RuntimeError, match="killed"):
        chain.run({**CONFIG, "b": "2"}, fail="b")
    assert not (tmp_path / "stages" / "b.json").exists()
    assert (tmp_path / "stages" / "b.started").exists()
    (tmp_path / "b" / "checkpoint").write_text("step 7")  # what an interrupted job leaves
    resumed = chain.run({**CONFIG, "b": "2"})
    assert resumed.outcomes[1].reason == "resuming an interrupted run"
    assert (tmp_path / "b" / "checkpoint").exists()  # same key: its outputs were kept
    assert not (tmp_path / "stages" / "b.started").exists()
    assert resumed.reused == ["a"]


def test_a_forced_stage_runs_from_scratch(tmp_path: Path) -> None:
    chain = Chain(tmp_path)
    chain.run(CONFIG)
    (tmp_path / "b" / "leftover").write_text("x")
    forced = chain.run(CONFIG, force="b")
    assert (
        forced.outcomes[1].reason == "rerun forced" and not (tmp_path / "b" / "leftover").exists()
    )
    assert forced.reused == ["a", "c"]  # b's bytes did not change, so c's key did not either


def test_demo_rerun_forces_the_named_stage_and_every_later_one() -> None:
    config = DemoConfig(rerun=("probe",))
    assert [config.forced(s) for s in ("videos", "curate", "pretrain")] == [False] * 3
    assert config.forced("probe-shape-random") and config.forced("planning")
    assert all(DemoConfig(reuse=False).forced(s) for s in ("videos", "planning"))
    assert not DemoConfig().forced("posttrain")
