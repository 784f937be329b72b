"""One curation run per output: a lock object beside the staging area, on a local disk or S3.

`OUTPUT/_staging/lock.json` is created exclusively (`O_EXCL` locally; a PUT with
`If-None-Match: *` on S3 and S3-compatible stores), says who holds it, and is refreshed by a
heartbeat while the run lives. A second run on the same output stops at once with a clear
error instead of writing a second version beside the first. A lock whose holder died (kill -9,
lost node) is taken over when its heartbeat is older than `stale_after_s`, or at once when it
was held by a process of this host that no longer exists. On S3 the takeover and every
heartbeat are conditional on the lock object's ETag (`If-Match`), so of two runs that race for
a stale lock exactly one wins, and a holder whose lock was taken over learns it (`check`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any

from fsspec.asyn import sync

from tasks import storage
from tasks.curation.writer import STAGING_DIR

LOCK_NAME = "lock.json"
STALE_AFTER_S = 120.0
HEARTBEAT_S = 20.0


class OutputLocked(RuntimeError):
    """Another run holds the output's lock (or took it over from this one)."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock, and when it last said it was alive."""

    owner: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None  # a torn or foreign file: treated as stale

    def is_stale(self, stale_after_s: float) -> bool:
        if time.time() - self.heartbeat > stale_after_s:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"host {self.host}, pid {self.pid}, since {since}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LocalStore:
    """The lock as a local file: exclusive create, takeover by an atomic rename."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, data: bytes) -> str | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        return "local"

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as file:
                return file.read(), "local"
        except FileNotFoundError:
            return None

    def take_over(self, stale: bytes, tag: str, data: bytes) -> str | None:
        tomb = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, tomb)  # of two racing takers, one moves the stale lock
        except FileNotFoundError:
            return None
        with open(tomb, "rb") as file:
            moved = file.read()
        if moved != stale:  # it was someone's fresh lock: put it back, then give up
            with contextlib.suppress(FileExistsError):
                os.link(tomb, self.path)
            os.remove(tomb)
            return None
        os.remove(tomb)
        return self.create(data)

    def refresh(self, data: bytes, tag: str) -> str | None:
        temporary = f"{self.path}.tmp-{os.getpid()}"
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, self.path)
        return tag

    def delete(self, tag: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _S3Store:
    """The lock as an S3 object: conditional PUTs (`If-None-Match`, `If-Match` on the ETag)."""

    def __init__(self, uri: str) -> None:
        self.fs, path = storage.filesystem(uri)
        self.bucket, self.key = path.split("/", 1)

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            reply = self.fs.call_s3(
                "put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition
            )
        except (OSError, ValueError) as error:  # s3fs maps 412 PreconditionFailed to OSError
            if "Precondition" in str(error) or isinstance(error, FileExistsError):
                return None
            raise
        return str(reply["ETag"])

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        """The lock's bytes and the ETag of exactly those bytes (one GET)."""

        async def get() -> tuple[bytes, str]:
            reply = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            async with reply["Body"] as body:
                return bytes(await body.read()), str(reply["ETag"])

        try:
            return sync(self.fs.loop, get)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def take_over(self, stale: bytes, tag: str, data: bytes) -> str | None:
        return self._put(data, IfMatch=tag)

    def refresh(self, data: bytes, tag: str) -> str | None:
        return self._put(data, IfMatch=tag)

    def delete(self, tag: str) -> None:
        self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key)


def lock_uri(output: str) -> str:
    return storage.join(output, STAGING_DIR, LOCK_NAME)


class OutputLock:
    """A context manager holding the output's lock for the life of a run (with a heartbeat)."""

    def __init__(
        self, output: str, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.output = output
        uri = lock_uri(output)
        self.store: Any = _S3Store(uri) if storage.is_remote(uri) else _LocalStore(uri)
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        now = time.time()
        self.holder = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now, now)
        self.tag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `OutputLocked` naming the run that holds it."""
        for _ in range(3):
            self.tag = self.store.create(self.holder.to_bytes())
            if self.tag is not None:
                return
            found = self.store.read()
            if found is None:
                continue  # released meanwhile: try again
            data, tag = found
            other = Holder.parse(data)
            if other is not None and not other.is_stale(self.stale_after_s):
                raise OutputLocked(
                    f"another curation run is writing {self.output} ({other.describe()}); "
                    f"wait for it to finish (a dead run's lock expires after "
                    f"{self.stale_after_s:.0f} s without a heartbeat)"
                )
            self.tag = self.store.take_over(data, tag, self.holder.to_bytes())
            if self.tag is not None:
                return
        raise OutputLocked(f"could not take the lock of {self.output}: other runs race for it")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self._refresh():
                self.lost = True
                return

    def _refresh(self) -> bool:
        """Renew the heartbeat; False when the lock is no longer this run's."""
        found = self.store.read()
        holder = Holder.parse(found[0]) if found else None
        if found is None or holder is None or holder.owner != self.holder.owner:
            return False
        self.holder = dataclasses.replace(self.holder, heartbeat=time.time())
        self.tag = self.store.refresh(self.holder.to_bytes(), found[1])
        return self.tag is not None

    def check(self) -> None:
        """Raise `OutputLocked` if another run took this run's lock over (publish nothing)."""
        found = self.store.read()
        holder = Holder.parse(found[0]) if found else None
        if self.lost or holder is None or holder.owner != self.holder.owner:
            raise OutputLocked(f"this run lost the lock of {self.output} to another run")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        found = self.store.read()
        holder = Holder.parse(found[0]) if found else None
        if found is not None and holder is not None and holder.owner == self.holder.owner:
            self.store.delete(found[1])

    def __enter__(self) -> OutputLock:
        self.acquire()
        self._thread = threading.Thread(target=self._beat, name="curation-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
