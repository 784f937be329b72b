"""Write and read robot trajectories in the LeRobot dataset v3.0 layout, on local disk or `s3://`.

`LeRobotWriter` appends episodes (frames, states, actions): rows go to chunked
parquet files, frames are streamed into chunked mp4 files (many episodes per
file, back to back), and the metadata (`meta/episodes`, `meta/tasks.parquet`,
`meta/stats.json`) is written on `close()`, `meta/info.json` last, so a dataset
without `info.json` is an unfinished one. Remote outputs are staged in a local
folder and each file is uploaded as soon as it is complete.

`LeRobotReader` opens any v3.0 dataset with a video feature, a state and an
action feature (ours or LeRobot's) and returns whole episodes as arrays.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import storage
from tasks.robot.layout import (
    DATA_PATH,
    EPISODES_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    ChunkLimits,
    DatasetSpec,
    RunningStats,
    build_features,
    build_info,
    chunk_and_file,
    image_rows,
)
from tasks.robot.lerobot_read import Episode, LeRobotFormatError, LeRobotReader
from tasks.robot.video import EncoderSettings, VideoEncoder

__all__ = ["Episode", "LeRobotFormatError", "LeRobotReader", "LeRobotWriter", "prepare_output"]


def prepare_output(uri: str, overwrite: bool) -> None:
    """Make sure `uri` can take a new dataset: absent or empty, or removed when `overwrite`."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        return
    if overwrite:
        fs.rm(path, recursive=True)
    elif fs.isfile(path) or fs.ls(path):
        raise FileExistsError(
            f"{uri} already exists and is not empty; choose a new output or overwrite it "
            "(CLI: --overwrite)"
        )


def _vectors(values: np.ndarray) -> pa.FixedSizeListArray:
    rows = np.ascontiguousarray(values, dtype=np.float32)  # (T, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])


@dataclass
class _OpenFile:
    """The data or video file being filled: its sequence number and contents so far."""

    sequence: int = 0
    frames: int = 0


class LeRobotWriter:
    """Append episodes to a new LeRobot v3.0 dataset at `uri`; call `close()` to finish it."""

    def __init__(
        self,
        uri: str,
        spec: DatasetSpec,
        limits: ChunkLimits | None = None,
        encoder: EncoderSettings | None = None,
        overwrite: bool = False,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.spec = spec
        self.limits = limits or ChunkLimits()
        self.encoder_settings = encoder or EncoderSettings()
        self._fs, self._path = storage.filesystem(self.uri)
        prepare_output(self.uri, overwrite)
        self._remote = storage.is_remote(self.uri)
        self._root = tempfile.mkdtemp(prefix="vjepa-lerobot-") if self._remote else self._path
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._data_tables: list[pa.Table] = []
        self._data = _OpenFile()
        self._video = _OpenFile()
        self._encoder: VideoEncoder | None = None
        self._stats = {key: RunningStats() for key in self._stat_keys()}
        self.total_frames = 0

    def add_episode(
        self, frames: np.ndarray, states: np.ndarray, actions: np.ndarray, task: str
    ) -> dict[str, Any]:
        """Record one episode: frames (T, H, W, 3) uint8, states (T, S), actions (T, A).

        Row t holds the observation at t and the action taken there (it moves
        frame t to frame t + 1). Returns the episode's metadata row.
        """
        length = self._check_episode(frames, states, actions)
        episode_index = len(self._episodes)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        table = self._episode_table(states, actions, episode_index, task_index)
        row: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": [task],
            "length": length,
            **self._append_data(table),
            **self._append_video(frames),
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        row.update(self._episode_stats(table, frames))
        self._episodes.append(row)
        self.total_frames += length
        self._roll_files()
        return row

    def close(self) -> dict[str, Any]:
        """Flush files, write the metadata (`info.json` last), upload if remote; returns info."""
        self._flush_data()
        self._close_video()
        self._write_table(
            pa.Table.from_pylist(self._episodes), EPISODES_PATH.format(chunk_index=0, file_index=0)
        )
        self._write_tasks()
        stats = {
            key: running.as_dict(self._stat_shape(key)) for key, running in self._stats.items()
        }
        self._write_json(STATS_PATH, stats)
        features = build_features(
            self.spec, self.encoder_settings.codec_name, self.encoder_settings.pix_fmt
        )
        info = build_info(
            self.spec,
            self.limits,
            features,
            len(self._episodes),
            self.total_frames,
            len(self._tasks),
        )
        self._write_json(INFO_PATH, info)  # last: its presence marks a finished dataset
        if self._remote:
            shutil.rmtree(self._root, ignore_errors=True)
        return info

    def abort(self) -> None:
        """Stop without finishing: kill ffmpeg and drop the staging folder."""
        if self._encoder is not None:
            self._encoder.__exit__(RuntimeError, None, None)
            self._encoder = None
        if self._remote:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _check_episode(self, frames: np.ndarray, states: np.ndarray, actions: np.ndarray) -> int:
        spec = self.spec
        length = len(frames)
        checks = [
            (frames.shape[1:] == (spec.height, spec.width, 3), f"frames {frames.shape}"),
            (frames.dtype == np.uint8, f"frames dtype {frames.dtype}"),
            (states.shape == (length, spec.state_dim), f"states {states.shape}"),
            (actions.shape == (length, spec.action_dim), f"actions {actions.shape}"),
        ]
        for good, what in checks:
            if not good:
                raise ValueError(
                    f"episode does not match the dataset spec ({what}); expected T frames of "
                    f"({spec.height}, {spec.width}, 3) uint8, states (T, {spec.state_dim}), "
                    f"actions (T, {spec.action_dim})"
                )
        if length == 0:
            raise ValueError("an episode needs at least one frame")
        return length

    def _episode_table(
        self, states: np.ndarray, actions: np.ndarray, episode_index: int, task_index: int
    ) -> pa.Table:
        length = len(states)
        frame_index = np.arange(length, dtype=np.int64)  # (T,)
        return pa.table(
            {
                "observation.state": _vectors(states),
                "action": _vectors(actions),
                "timestamp": pa.array((frame_index / self.spec.fps).astype(np.float32)),
                "frame_index": pa.array(frame_index),
                "episode_index": pa.array(np.full(length, episode_index, dtype=np.int64)),
                "index": pa.array(frame_index + self.total_frames),
                "task_index": pa.array(np.full(length, task_index, dtype=np.int64)),
            }
        )

    def _append_data(self, table: pa.Table) -> dict[str, Any]:
        chunk, file = chunk_and_file(self._data.sequence, self.limits.chunks_size)
        self._data_tables.append(table)
        self._data.frames += table.num_rows
        return {
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + table.num_rows,
        }

    def _append_video(self, frames: np.ndarray) -> dict[str, Any]:
        key = self.spec.video_key
        chunk, file = chunk_and_file(self._video.sequence, self.limits.chunks_size)
        if self._encoder is None:
            relative = self._video_relative(chunk, file)
            local = os.path.join(self._root, relative)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            self._encoder = VideoEncoder(
                local, self.spec.width, self.spec.height, self.spec.fps, self.encoder_settings
            )
            self._video.frames = 0
        start = self._video.frames
        self._encoder.write(frames)
        self._video.frames += len(frames)
        return {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": start / self.spec.fps,
            f"videos/{key}/to_timestamp": self._video.frames / self.spec.fps,
        }

    def _episode_stats(self, table: pa.Table, frames: np.ndarray) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for key in self._stats:
            values = image_rows(frames) if key == self.spec.video_key else _column(table, key)
            episode = RunningStats()
            episode.update(values)
            self._stats[key].update(values)
            for name, value in episode.as_dict(self._stat_shape(key)).items():
                row[f"stats/{key}/{name}"] = value
        return row

    def _roll_files(self) -> None:
        data_mb = sum(t.nbytes for t in self._data_tables) / 2**20
        if data_mb >= self.limits.data_files_size_in_mb:
            self._flush_data()
        encoder = self._encoder
        if encoder is not None and encoder.size_in_mb() >= self.limits.video_files_size_in_mb:
            self._close_video()

    def _flush_data(self) -> None:
        if not self._data_tables:
            return
        chunk, file = chunk_and_file(self._data.sequence, self.limits.chunks_size)
        relative = DATA_PATH.format(chunk_index=chunk, file_index=file)
        self._write_table(pa.concat_tables(self._data_tables), relative)
        self._data_tables = []
        self._data = _OpenFile(sequence=self._data.sequence + 1)

    def _close_video(self) -> None:
        if self._encoder is None:
            return
        self._encoder.close()
        self._publish(os.path.relpath(self._encoder.path, self._root))
        self._encoder = None
        self._video = _OpenFile(sequence=self._video.sequence + 1)

    def _video_relative(self, chunk: int, file: int) -> str:
        return VIDEO_PATH.format(video_key=self.spec.video_key, chunk_index=chunk, file_index=file)

    def _stat_keys(self) -> list[str]:
        keys = [self.spec.video_key, "observation.state", "action", "timestamp"]
        return [*keys, "frame_index", "episode_index", "index", "task_index"]

    def _stat_shape(self, key: str) -> tuple[int, ...] | None:
        return (3, 1, 1) if key == self.spec.video_key else None

    def _write_table(self, table: pa.Table, relative: str) -> None:
        local = os.path.join(self._root, relative)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        pq.write_table(table, local)
        self._publish(relative)

    def _write_tasks(self) -> None:
        import pandas as pd

        # LeRobot keeps the task text as the (named) pandas index of tasks.parquet.
        names = sorted(self._tasks, key=self._tasks.__getitem__)
        frame = pd.DataFrame(
            {"task_index": [self._tasks[name] for name in names]},
            index=pd.Index(names, name="task"),
        )
        local = os.path.join(self._root, TASKS_PATH)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        frame.to_parquet(local)
        self._publish(TASKS_PATH)

    def _write_json(self, relative: str, document: dict[str, Any]) -> None:
        local = os.path.join(self._root, relative)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as handle:
            json.dump(document, handle, indent=2)
        self._publish(relative)

    def _publish(self, relative: str) -> None:
        """Remote output: upload a finished file and drop its staged copy (bounded local disk)."""
        if not self._remote:
            return
        local = os.path.join(self._root, relative)
        self._fs.put_file(local, storage.join(self._path, *relative.split(os.sep)))
        os.remove(local)


def _column(table: pa.Table, key: str) -> np.ndarray:
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        return column.flatten().to_numpy().reshape(table.num_rows, -1)  # (T, D)
    return column.to_numpy().reshape(table.num_rows, 1)  # (T, 1)
