"""Robot data: the built-in PointReach env, trajectory collection, the LeRobot v3 layout, windows.

Importing this package registers `vjepa/PointReach-v0` with Gymnasium, so
`gymnasium.make("vjepa/PointReach-v0", render_mode="rgb_array")` works after
`import tasks.robot`, and so do the suite's other envs (`tasks.robot.envs`).
"""

from __future__ import annotations

import gymnasium

POINT_REACH_ID = "vjepa/PointReach-v0"

if POINT_REACH_ID not in gymnasium.registry:
    gymnasium.register(
        id=POINT_REACH_ID,
        entry_point="tasks.robot.env:PointReachEnv",
        max_episode_steps=200,
    )

from tasks.robot.envs import SUITE  # noqa: E402  (registers the rest of the env suite)

ENV_SUITE = (POINT_REACH_ID, *SUITE)

__all__ = ["ENV_SUITE", "POINT_REACH_ID"]
