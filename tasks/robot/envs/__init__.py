"""The built-in env suite beyond PointReach, registered with Gymnasium on import.

| id | dynamics | state |
| --- | --- | --- |
| `vjepa/ArmReach-v0` | two-link arm, joint-angle deltas (radians, +-0.2) | joint angles (2,) |
| `vjepa/DiscPush-v0` | pusher disc; the object moves only by contact | pusher and object xy (4,) |
| `vjepa/DistractorReach-v0` | PointReach with shapes moving in the background | disc xy (2,) |

Each renders `rgb_array` frames, exposes `info["state"]` and is deterministic given
the reset seed, so `vjepa collect`, `posttrain`, `eval-planning` and
`diagnose-world-model` run on all of them unchanged.
"""

from __future__ import annotations

import gymnasium

ARM_REACH_ID = "vjepa/ArmReach-v0"
DISC_PUSH_ID = "vjepa/DiscPush-v0"
DISTRACTOR_REACH_ID = "vjepa/DistractorReach-v0"

SUITE = {
    ARM_REACH_ID: "tasks.robot.envs.arm:ArmReachEnv",
    DISC_PUSH_ID: "tasks.robot.envs.pusher:DiscPushEnv",
    DISTRACTOR_REACH_ID: "tasks.robot.envs.distractor:DistractorReachEnv",
}

for _env_id, _entry_point in SUITE.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point, max_episode_steps=200)

__all__ = ["ARM_REACH_ID", "DISC_PUSH_ID", "DISTRACTOR_REACH_ID", "SUITE"]
