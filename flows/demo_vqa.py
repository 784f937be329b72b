"""The demo's VQA stage: make-tiny-lm -> align (with vision, and blind) -> eval-vqa of both.

The tiny LM is trained on the sample videos' training questions, then aligned with the
pretrained encoder twice on the same recipe: once with the visual tokens, once blind (the
tokens removed). Both are scored on the held-out videos beside the majority answer, and the
aligned model answers one held-out question through the HTTP server (`/v1/vqa`, served beside
the world model's planner in the same application). A
question type passes when the aligned model beats the better baseline by a margin its number
of held-out clips supports (`DemoVQASummary.margin`). Every job is the flow its own command
runs, so the demo records the same artifacts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from flows.demo_config import DemoConfig
from flows.local_serve import TOKEN_ENV, served
from flows.stages import Stages, config_inputs
from flows.vqa import (
    align_flow,
    align_job,
    eval_vqa_job,
    make_tiny_lm_flow,
    publish_align,
    publish_eval_vqa,
)
from tasks import storage
from tasks.training.launch import ScaleConfig, side_by_side
from tasks.training.summaries import JobSummary
from tasks.vqa.align import AlignConfig
from tasks.vqa.evaluate import EvalVQAConfig
from tasks.vqa.qa import QA_FILE, TEST, QAItem, read_qa
from tasks.vqa.tiny_lm import TinyLMConfig

# A type passes when the aligned accuracy beats the better baseline by this many binomial
# standard errors of that baseline's accuracy over the type's held-out clips.
MARGIN_STANDARD_ERRORS = 2.0


@dataclasses.dataclass(frozen=True)
class DemoVQASummary(JobSummary):
    """Held-out accuracy per question type: aligned model, the same model blind, majority."""

    model: str
    blind_model: str
    per_type: dict[str, float]
    blind_per_type: dict[str, float]
    majority_per_type: dict[str, float]
    questions_per_type: dict[str, int]
    accuracy: float
    blind_accuracy: float
    majority_accuracy: float
    seconds: float
    clips_per_type: dict[str, int] = dataclasses.field(default_factory=dict)
    # one held-out question asked through the HTTP server (empty in older summaries)
    http_question: str = ""
    http_expected: str = ""
    http_answer: str = ""
    http_serve_seconds: float = 0.0  # starting the application with the VQA deployment
    http_request_ms: float = 0.0  # the client's round trip
    http_server_ms: float = 0.0  # the ingress's own time for it
    # the aligned model per type on the seen phrasings and on the held-out one (older: empty)
    seen_phrasing_per_type: dict[str, float] = dataclasses.field(default_factory=dict)
    heldout_phrasing_per_type: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def job_name(cls) -> str:
        return "demo-vqa"

    def baseline(self, kind: str) -> float:
        """The better of the blind model's and the majority answer's accuracy on `kind`."""
        return max(self.blind_per_type[kind], self.majority_per_type[kind])

    def margin(self, kind: str) -> float:
        """`MARGIN_STANDARD_ERRORS` binomial standard errors of the baseline on `kind`.

        The trials are the type's held-out clips, not its questions: the phrasings of one
        video share their answer, so counting them would shrink the margin unfairly.
        """
        trials = self.clips_per_type.get(kind) or self.questions_per_type[kind]
        chance = self.baseline(kind)
        return MARGIN_STANDARD_ERRORS * math.sqrt(max(chance * (1 - chance), 1e-4) / trials)

    def passed(self, kind: str) -> bool:
        """Whether the aligned model beats both baselines on `kind` by more than the margin."""
        return self.per_type[kind] > self.baseline(kind) + self.margin(kind)


def vqa_configs(config: DemoConfig, encoder: str) -> tuple[TinyLMConfig, AlignConfig, AlignConfig]:
    """The tiny LM and the two alignment runs (with vision, blind) of the demo."""
    qa = storage.join(config.path("videos"), QA_FILE)
    lm = TinyLMConfig(corpus=qa, output=config.path("vqa/lm"), steps=config.vqa_lm_steps)
    aligned = AlignConfig(
        encoder=encoder,
        lm=lm.output,
        data=config.path("curated"),
        qa=qa,
        output=config.path("vqa/aligned"),
        train_lm=config.vqa_train_lm,
        steps=config.vqa_steps,
        pool=config.vqa_pool,
        pool_mode=config.vqa_pool_mode,
        temporal_kernel=config.vqa_temporal_kernel,
        first_types=config.vqa_first_types,
        first_steps=config.vqa_first_steps,
        learning_rate=config.vqa_lr,
        lm_learning_rate=config.vqa_lm_lr,
        seed=config.seed,
        resume=True,
    )
    blind = dataclasses.replace(aligned, blind=True, output=config.path("vqa/blind"))
    return lm, aligned, blind


@dataclasses.dataclass(frozen=True)
class HttpAnswer:
    """One question answered through `/v1/vqa`, with its timings."""

    question: str
    expected: str
    answer: str
    serve_seconds: float
    request_ms: float
    server_ms: float


def heldout_clip(data: str, qa: str) -> tuple[QAItem, np.ndarray]:
    """The first held-out question of the QA table and the uint8 frames of its first clip."""
    from tasks.clips import clips_to_array, read_clip_table
    from tasks.tables import SourceMatcher

    item = next(item for item in read_qa(qa) if item.split == TEST)
    table = read_clip_table(data, columns=["source", "start_s", "end_s", "frames", "shape"])
    matcher = SourceMatcher({item.source})
    for row in table.to_pylist():
        if matcher.match(row["source"]) and item.covers(row["start_s"], row["end_s"]):
            return item, clips_to_array([row["frames"]], row["shape"])[0]  # (T, H, W, 3)
    raise ValueError(f"no curated clip of {item.source} for its held-out question")


def ask_over_http(bundle: str, model: str, data: str, qa: str) -> HttpAnswer:
    """Serve `model` beside the world model `bundle`, ask one held-out question, shut down."""
    from serving.client import VQAClient

    item, frames = heldout_clip(data, qa)
    started = time.monotonic()
    with served(bundle, vqa_model=model) as url:
        ready = time.monotonic()
        with VQAClient(url, token=os.environ[TOKEN_ENV]) as client:
            reply = client.ask(frames, item.question)
        request_ms = 1000 * (time.monotonic() - ready)
    return HttpAnswer(
        item.question, item.answer, reply.answer, ready - started, request_ms,
        reply.timing.server_ms,
    )  # fmt: skip


def run_vqa(
    config: DemoConfig, encoder: str, scale: ScaleConfig, world_model: str
) -> DemoVQASummary:
    """Train the tiny LM, align it with and without vision, evaluate both on held-out videos,
    and ask the aligned model one held-out question through the HTTP server."""
    lm, aligned, blind = vqa_configs(config, encoder)
    make_tiny_lm_flow(lm)
    runs = (aligned, blind)
    if side_by_side(scale, len(runs)):  # one CPU each: the pair takes about one run's time
        futures = [align_job.submit(run, scale) for run in runs]
        trained = [future.result() for future in futures]
        for summary in trained:
            publish_align(summary)
    else:
        trained = [align_flow(run, scale) for run in runs]
    evaluations = [
        (EvalVQAConfig(model=t.model, data=run.data, qa=run.qa), run.blind)
        for t, run in zip(trained, runs, strict=True)
    ]
    # evaluation runs in this process: two at once share its torch threads and overlap the
    # parts of each that wait (reading clips, the LM's Python-side generation loop)
    pending = [eval_vqa_job.submit(evaluation) for evaluation, _ in evaluations]
    results = [future.result() for future in pending]
    for (evaluation, is_blind), result in zip(evaluations, results, strict=True):
        publish_eval_vqa(evaluation, result, "vqa-accuracy-blind" if is_blind else "vqa-accuracy")
    seconds = sum(summary.seconds for summary in trained)
    seen, unseen = results
    http = ask_over_http(world_model, seen.model, aligned.data, aligned.qa)
    return DemoVQASummary(
        model=seen.model,
        blind_model=unseen.model,
        per_type=seen.per_type,
        blind_per_type=unseen.per_type,
        majority_per_type=seen.majority_per_type,
        questions_per_type=seen.questions_per_type,
        clips_per_type=seen.clips_per_type,
        accuracy=seen.accuracy,
        blind_accuracy=unseen.accuracy,
        majority_accuracy=seen.majority_accuracy,
        seconds=seconds + seen.seconds + unseen.seconds,
        http_question=http.question,
        http_expected=http.expected,
        http_answer=http.answer,
        http_serve_seconds=http.serve_seconds,
        http_request_ms=http.request_ms,
        http_server_ms=http.server_ms,
        seen_phrasing_per_type=seen.seen_phrasing_per_type,
        heldout_phrasing_per_type=seen.heldout_phrasing_per_type,
    )


def demo_vqa(
    config: DemoConfig, encoder: str, scale: ScaleConfig, stages: Stages, world_model: str
) -> DemoVQASummary:
    """The VQA stage, reused when its configuration, videos, clips and encoder are unchanged
    (the world model is only served beside it, for the application's planner)."""
    lm, aligned, blind = vqa_configs(config, encoder)
    inputs = {
        "lm": config_inputs(lm),
        "aligned": config_inputs(aligned),
        "blind": config_inputs(blind),
        "scale": dataclasses.asdict(scale),
        "videos": stages.digest("videos"),
        "data": stages.digest("curate"),
        "encoder": stages.digest("pretrain"),
    }
    return stages.run(
        "vqa", inputs, [config.path("vqa")], DemoVQASummary,
        lambda: run_vqa(config, encoder, scale, world_model), lambda s: [config.path("vqa")],
    )  # fmt: skip
