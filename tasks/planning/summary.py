"""The typed result of a closed-loop planning evaluation (`vjepa eval-planning`).

`tasks.planning.evaluate.evaluate` returns its JSON payload (also `results.json`);
`PlanningSummary.from_dict` reads it once, so flows, the report and `--json` read attributes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.planning.evaluate import EpisodeResult
from tasks.training.summaries import JobSummary


@dataclasses.dataclass(frozen=True)
class PlanningSummary(JobSummary):
    """Planner against random actions on the same seeded episodes, with the per-episode rows."""

    env: str
    checkpoint: str
    episodes: int
    steps: int
    goal_steps: int
    tolerance: float
    action_repeat: int
    success_rate: float
    mean_final_distance: float
    random_success_rate: float
    random_mean_final_distance: float
    mean_initial_distance: float
    mean_planner_steps: float
    mean_energy_spread: float | None
    noop_fraction: float
    cem_overrides: dict[str, Any]
    seconds: float
    planner_episodes: list[EpisodeResult]
    random_episodes: list[EpisodeResult]
    plot: str | None = None  # final_distance.png, once published
    results: str | None = None  # results.json, once published
    success_dims: list[int] | None = None  # the state dims success used (None: all)
    # payload keys this class does not name yet (kept, so results.json and --json lose nothing)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PlanningSummary:
        """The summary from `evaluate`'s payload or `results.json` (episode rows typed)."""
        rows = {
            name: [EpisodeResult(**row) if isinstance(row, dict) else row for row in values[name]]
            for name in ("planner_episodes", "random_episodes")
        }
        names = {field.name for field in dataclasses.fields(cls)}
        extra = {key: value for key, value in values.items() if key not in names | {"job"}}
        return super().from_dict({**values, **rows, "extra": {**values.get("extra", {}), **extra}})

    def payload(self) -> dict[str, Any]:
        """The JSON payload (`results.json`, `--json`): every field, the extra keys inline."""
        values = {k: v for k, v in self.as_dict().items() if k not in ("job", "extra")}
        return {**values, **self.extra}

    @property
    def files(self) -> list[str]:
        return [uri for uri in (self.plot, self.results) if uri]
