"""Read a LeRobot v3.0 dataset (local or `s3://`) episode by episode into arrays.

Works on any dataset in that layout with one video feature, a state and an
action feature: the path templates, fps and features come from
`meta/info.json`, per-episode offsets from `meta/episodes/*/*.parquet`.
Videos are decoded by ffmpeg straight from the file (local) or from a
presigned URL (S3, read with HTTP range requests, no full download).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import storage
from tasks.robot.layout import ACTION_KEY, EPISODES_DIR, INFO_PATH, STATE_KEY
from tasks.robot.video import decode_span, probe_size

PRESIGN_SECONDS = 6 * 3600


class LeRobotFormatError(ValueError):
    """The dataset does not have the layout or features the reader needs; says which file and the fix."""


@dataclass(frozen=True)
class Episode:
    """One whole episode: row t is the observation at t and the action taken there."""

    index: int
    frames: np.ndarray  # (T, H, W, 3) uint8
    states: np.ndarray  # (T, S) float32
    actions: np.ndarray  # (T, A) float32; action t moves frame t to frame t + 1
    timestamps: np.ndarray  # (T,) float32 seconds from the episode start
    fps: float
    task: str | None


class LeRobotReader:
    """Open a LeRobot v3.0 dataset at `uri`; `read_episode(i)` decodes one episode."""

    def __init__(
        self,
        uri: str,
        video_key: str | None = None,
        state_key: str = STATE_KEY,
        action_key: str = ACTION_KEY,
    ) -> None:
        self.uri = uri.rstrip("/")
        self._fs, self._path = storage.filesystem(self.uri)
        self.info = self._load_info()
        self.fps = float(self.info["fps"])
        self.state_key = state_key
        self.action_key = action_key
        self.video_key = self._check_features(video_key)
        self._episodes = self._load_episodes()
        self._data_cache: OrderedDict[str, pa.Table] = OrderedDict()
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def episode_indices(self) -> list[int]:
        return sorted(self._episodes)

    def episode_length(self, episode_index: int) -> int:
        return int(self._episode_row(episode_index)["length"])

    def read_episode(self, episode_index: int, size: tuple[int, int] | None = None) -> Episode:
        """Decode episode `episode_index`; frames resized to `size` = (height, width) if given."""
        row = self._episode_row(episode_index)
        states, actions, timestamps = self._read_rows(episode_index, row)
        frames = self._read_frames(episode_index, row, len(states), size)
        tasks = row.get("tasks")
        return Episode(
            index=episode_index,
            frames=frames,
            states=states,
            actions=actions,
            timestamps=timestamps,
            fps=self.fps,
            task=str(tasks[0]) if tasks is not None and len(tasks) else None,
        )

    def _file(self, relative: str) -> str:
        return storage.join(self._path, *relative.split("/"))

    def _uri(self, relative: str) -> str:
        return storage.join(self.uri, *relative.split("/"))

    def _load_info(self) -> dict[str, Any]:
        path = self._file(INFO_PATH)
        if not self._fs.exists(path):
            raise LeRobotFormatError(
                f"{self._uri(INFO_PATH)} not found: {self.uri} is not the root of a LeRobot "
                "dataset; point at the folder that holds meta/info.json (or record one with "
                "`vjepa collect`)"
            )
        with self._fs.open(path, "r") as handle:
            info: dict[str, Any] = json.load(handle)
        version = str(info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise LeRobotFormatError(
                f"{self._uri(INFO_PATH)}: codebase_version {version!r}, this reader needs the v3.0 "
                "layout; convert the dataset with LeRobot's "
                "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`"
            )
        for key in ("fps", "features", "data_path", "video_path"):
            if key not in info:
                raise LeRobotFormatError(
                    f"{self._uri(INFO_PATH)} lacks {key!r}; it is not a LeRobot v3.0 info.json"
                )
        return info

    def _check_features(self, video_key: str | None) -> str:
        features: dict[str, Any] = self.info["features"]
        videos = [name for name, spec in features.items() if spec.get("dtype") == "video"]
        where = self._uri(INFO_PATH)
        for role, key in (("state", self.state_key), ("action", self.action_key)):
            if key not in features:
                raise LeRobotFormatError(
                    f"{where} has no {role} feature {key!r} (features: {sorted(features)}); "
                    f"pass the dataset's name for it as the {role} key (CLI: --{role}-key)"
                )
        if video_key is None:
            if not videos:
                raise LeRobotFormatError(
                    f"{where} has no feature of dtype 'video' (features: {sorted(features)}); "
                    "this reader needs frames stored as mp4 videos"
                )
            return videos[0]
        if video_key not in videos:
            raise LeRobotFormatError(
                f"{where} has no video feature {video_key!r} (video features: {videos}; all "
                f"features: {sorted(features)}); pass one of the video features as the camera"
            )
        return video_key

    def _load_episodes(self) -> dict[int, dict[str, Any]]:
        pattern = self._file(f"{EPISODES_DIR}/*/*.parquet")
        files = sorted(self._fs.glob(pattern))
        if not files:
            raise LeRobotFormatError(
                f"no episode metadata under {self._uri(EPISODES_DIR)}; a v3.0 dataset lists its "
                "episodes in meta/episodes/chunk-*/file-*.parquet"
            )
        key = self.video_key
        needed = [
            *("episode_index", "length", "data/chunk_index", "data/file_index"),
            *(f"videos/{key}/chunk_index", f"videos/{key}/file_index"),
            f"videos/{key}/from_timestamp",
        ]
        episodes: dict[int, dict[str, Any]] = {}
        for path in files:
            with self._fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            missing = [name for name in needed if name not in table.column_names]
            if missing:
                raise LeRobotFormatError(
                    f"{storage.unstrip(self._fs, path)} lacks columns {missing}; re-create the "
                    "episode metadata with LeRobot v3.0 (or `vjepa collect`)"
                )
            columns = [*needed, *(["tasks"] if "tasks" in table.column_names else [])]
            for row in table.select(columns).to_pylist():
                episodes[int(row["episode_index"])] = row
        return episodes

    def _episode_row(self, episode_index: int) -> dict[str, Any]:
        if episode_index not in self._episodes:
            raise KeyError(f"{self.uri} has no episode {episode_index}")
        return self._episodes[episode_index]

    def _data_table(self, relative: str) -> pa.Table:
        if relative in self._data_cache:
            self._data_cache.move_to_end(relative)
            return self._data_cache[relative]
        path = self._file(relative)
        if not self._fs.exists(path):
            raise LeRobotFormatError(
                f"{self._uri(relative)} not found, but meta/episodes points to it; the dataset "
                "is incomplete (copy it again)"
            )
        columns = [self.state_key, self.action_key, "episode_index", "frame_index", "timestamp"]
        with self._fs.open(path, "rb") as handle:
            table = pq.read_table(handle, columns=columns)
        self._data_cache[relative] = table
        if len(self._data_cache) > 2:
            self._data_cache.popitem(last=False)
        return table

    def _read_rows(
        self, episode_index: int, row: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        relative = self.info["data_path"].format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
        )
        table = self._data_table(relative)
        rows = table.filter(pc.equal(table.column("episode_index"), episode_index))
        rows = rows.sort_by("frame_index")
        if rows.num_rows != int(row["length"]):
            raise LeRobotFormatError(
                f"{self._uri(relative)} holds {rows.num_rows} rows of episode {episode_index}, "
                f"meta/episodes says {row['length']}; the data and its metadata disagree"
            )
        states = _vectors(rows.column(self.state_key))  # (T, S)
        actions = _vectors(rows.column(self.action_key))  # (T, A)
        timestamps = rows.column("timestamp").to_numpy().astype(np.float32)  # (T,)
        return states, actions, timestamps

    def _read_frames(
        self, episode_index: int, row: dict[str, Any], length: int, size: tuple[int, int] | None
    ) -> np.ndarray:
        key = self.video_key
        relative = self.info["video_path"].format(
            video_key=key,
            chunk_index=int(row[f"videos/{key}/chunk_index"]),
            file_index=int(row[f"videos/{key}/file_index"]),
        )
        source = self._video_source(relative)
        resize = size is not None
        if size is None:
            if source not in self._sizes:
                width, height = probe_size(source)
                self._sizes[source] = (height, width)
            size = self._sizes[source]
        start = float(row[f"videos/{key}/from_timestamp"])
        frames = decode_span(source, start, length, self.fps, size, resize)
        if len(frames) < length:
            raise LeRobotFormatError(
                f"{self._uri(relative)}: episode {episode_index} needs {length} frames from "
                f"t={start:.3f}s but the video holds only {len(frames)} there; the video is "
                "shorter than the data: re-encode it or fix videos/.../from_timestamp in "
                "meta/episodes"
            )
        return frames

    def _video_source(self, relative: str) -> str:
        """What ffmpeg opens: the local path, or a presigned HTTP URL for S3."""
        path = self._file(relative)
        if not self._fs.exists(path):
            raise LeRobotFormatError(
                f"{self._uri(relative)} not found, but meta/episodes points to it; the dataset "
                "is incomplete (copy it again)"
            )
        if not storage.is_remote(self.uri):
            return path
        return str(self._fs.url(path, expires=PRESIGN_SECONDS))


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A list / fixed-size-list / scalar column as a float32 matrix (T, D)."""
    array = column.combine_chunks()
    length = len(array)
    if pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.astype(np.float32).reshape(length, -1)  # (T, D)
    return array.to_numpy(zero_copy_only=False).astype(np.float32).reshape(length, 1)  # (T, 1)
