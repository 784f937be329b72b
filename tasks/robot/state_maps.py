"""State mappings for third-party envs whose observation mixes positions, velocities and targets.

Pass one as `--state-fn tasks.robot.state_maps:NAME` (collect, eval-planning,
diagnose-world-model); each is called as `function(observation, info)` and returns the
low-dimensional state. The `*_proprio` maps add the joint velocities to the position that
success is measured on, for torque-controlled arms whose next frame depends on them: pass
`--success-dims` (eval-planning, diagnose-world-model) so success uses the position only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reacher_fingertip(observation: Any, info: dict[str, Any]) -> np.ndarray:
    """Gymnasium MuJoCo `Reacher-v5`: the fingertip's (x, y).

    The observation is `cos q (2), sin q (2), target xy (2), joint velocities (2),
    fingertip - target xy (2)`, so the fingertip is target + (fingertip - target).
    """
    values = np.asarray(observation, dtype=np.float32).reshape(-1)
    return values[4:6] + values[8:10]


def reacher_proprio(observation: Any, info: dict[str, Any]) -> np.ndarray:
    """`Reacher-v5`: fingertip (x, y), then the two joint velocities (success dims 0,1)."""
    values = np.asarray(observation, dtype=np.float32).reshape(-1)
    return np.concatenate([reacher_fingertip(observation, info), values[6:8]])


def pusher_fingertip(observation: Any, info: dict[str, Any]) -> np.ndarray:
    """Gymnasium MuJoCo `Pusher-v5`: the arm's fingertip (x, y, z) (observation dims 14-16).

    A reaching goal for random-action data: random arm motions move the fingertip by
    0.1-0.6 in 20 steps but leave the object where it is.
    """
    return np.asarray(observation, dtype=np.float32).reshape(-1)[14:17]


def pusher_proprio(observation: Any, info: dict[str, Any]) -> np.ndarray:
    """`Pusher-v5`: fingertip (x, y, z), then the seven joint velocities (observation dims 7-13;
    success dims 0,1,2)."""
    values = np.asarray(observation, dtype=np.float32).reshape(-1)
    return np.concatenate([values[14:17], values[7:14]])


def pusher_object(observation: Any, info: dict[str, Any]) -> np.ndarray:
    """Gymnasium MuJoCo `Pusher-v5`: the object's (x, y) (observation dims 17-18)."""
    return np.asarray(observation, dtype=np.float32).reshape(-1)[17:19]
