"""What recorded trajectories say about a robot's actions: their bounds and their effect.

`action_bounds`: min/max of the recorded actions, the range a predictor has seen.

Planning rolls the robot state forward between predicted frames (the AC predictor
takes a state token per step). For delta/velocity actions the state moves by a
fixed gain per unit of action: `state[t+1] = state[t] + gain * action[t]` on the
state dims the actions drive. Post-training fits that gain per action dim by
least squares on consecutive recorded rows of each episode and writes it, scaled
to the control rate, as `WorldModelSpec.action_scale`. When the fit explains too
little of the state change (absolute-position actions, joint-space states), no
scale is written and planning keeps the predictor's default rule. Action dims that never move
(zero-padded) get gain 0 and are left out of the fit's R^2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from tasks import storage

MIN_R2 = 0.5  # below this the linear rule explains too little to be worth using


@dataclass(frozen=True)
class ActionScaleFit:
    """Gain per action dim at the control rate (None: no usable fit), its R^2 and sample count."""

    scale: tuple[float, ...] | None
    r2: float
    samples: int


def fit_action_scale(
    states: np.ndarray,
    actions: np.ndarray,
    episodes: np.ndarray,
    stride: int = 1,
    min_r2: float = MIN_R2,
) -> ActionScaleFit:
    """Fit `state[t+1] - state[t] = gain * action[t]` over rows in episode order.

    `states (N, S)`, `actions (N, A)`, `episodes (N,)`, rows sorted by episode then frame.
    Pairs that cross an episode boundary are skipped. The returned scale is `gain * stride`:
    windows at a control rate `stride` times slower average the recorded actions, so one
    control step moves the state `stride` times as far per unit of (mean) action.
    """
    if states.ndim != 2 or actions.ndim != 2 or not len(states) == len(actions) == len(episodes):
        raise ValueError("states (N, S), actions (N, A) and episodes (N,) must have N rows")
    dims = actions.shape[1]
    same = episodes[1:] == episodes[:-1]  # (N-1,) pairs inside one episode
    if not same.any():
        return ActionScaleFit(None, 0.0, 0)
    taken = actions[:-1][same].astype(np.float64)  # (M, A)
    power = (taken * taken).sum(axis=0)  # (A,)
    # Constant-zero dims (zero-padded actions, common in LeRobot data) carry no information:
    # fit and score the dims that move, give the others gain 0 (they move no state).
    moving = power > 0  # (A,)
    if not moving.any() or np.flatnonzero(moving)[-1] >= states.shape[1]:
        return ActionScaleFit(None, 0.0, len(taken))  # no moving dim, or one without a state dim
    width = min(dims, states.shape[1])
    delta = np.zeros_like(taken)  # (M, A); padded dims beyond the state stay 0
    delta[:, :width] = (states[1:, :width] - states[:-1, :width])[same]
    gain = np.zeros(dims)
    gain[moving] = (delta * taken).sum(axis=0)[moving] / power[moving]  # (A,)
    residual = float(((delta - gain * taken)[:, moving] ** 2).sum())
    total = float((delta[:, moving] ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else 0.0
    scale = tuple(float(g) * stride for g in gain) if r2 >= min_r2 else None
    return ActionScaleFit(scale, r2, len(delta))


def action_bounds(uri: str, key: str) -> tuple[list[float], list[float]]:
    """min/max of the recorded actions: `meta/stats.json`, else a scan of the data files."""
    import pyarrow.parquet as pq

    from tasks.robot.layout import STATS_PATH

    fs, root = storage.filesystem(uri)
    stats_path = storage.join(root, *STATS_PATH.split("/"))
    if fs.exists(stats_path):
        stats = json.loads(fs.cat_file(stats_path)).get(key, {})
        if "min" in stats and "max" in stats:
            return [float(v) for v in stats["min"]], [float(v) for v in stats["max"]]
    values = [
        np.asarray(pq.read_table(fs.open(path, "rb"), columns=[key]).column(key).to_pylist())
        for path in sorted(fs.glob(storage.join(root, "data", "**", "*.parquet")))
    ]
    if not values:
        raise ValueError(f"{uri}: no data files to take the action bounds from")
    actions = np.concatenate(values).reshape(sum(len(v) for v in values), -1)  # (N, A)
    return actions.min(axis=0).tolist(), actions.max(axis=0).tolist()


def read_state_actions(
    uri: str, state_key: str, action_key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States `(N, S)`, actions `(N, A)` and episode indices `(N,)` of a LeRobot dataset.

    Rows come from every `data/**/*.parquet` file (local or `s3://`), sorted by episode and
    frame index.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, root = storage.filesystem(uri)
    paths = sorted(fs.glob(storage.join(root, "data", "**", "*.parquet")))
    if not paths:
        raise ValueError(f"{uri}: no data files to fit the state dynamics from")
    columns = [state_key, action_key, "episode_index", "frame_index"]
    tables = [pq.read_table(fs.open(path, "rb"), columns=columns) for path in paths]
    table = pa.concat_tables(tables).sort_by(
        [("episode_index", "ascending"), ("frame_index", "ascending")]
    )
    states = np.asarray(table.column(state_key).to_pylist(), dtype=np.float32)
    actions = np.asarray(table.column(action_key).to_pylist(), dtype=np.float32)
    episodes = np.asarray(table.column("episode_index").to_pylist(), dtype=np.int64)
    return states.reshape(len(states), -1), actions.reshape(len(actions), -1), episodes
