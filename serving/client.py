"""Robot-side clients for the serving API (httpx, timeouts, retries with backoff).

`PlannerClient(url, token).plan(frames, state, goal, previous_plan=None)` returns a `PlanResult`
whose `actions (H, A)` the robot executes (usually the first one) before asking again with the
plan as `previous_plan`. Connection errors, timeouts and 5xx answers (a replica restarting) are
retried with exponential backoff; 4xx answers raise `ServingError` with the server's message at
once, since repeating a bad request cannot help. Planning, embedding and greedy answering are pure
functions of their inputs, so a retried POST is safe. `VQAClient` asks questions about a clip
(frames or an encoded video file), optionally streaming the answer's text as it is generated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, Self

import httpx
import msgpack
import numpy as np

from serving.codec import CONTENT_TYPE, decode_array, pack
from serving.schemas import PlanResult
from serving.vqa_schemas import VQAResponse

LOGGER = logging.getLogger("vjepa.serving.client")
LOGGER.addHandler(logging.NullHandler())  # no last-resort print outside the CLI


def wait_healthy(url: str, timeout: float = 120.0) -> None:
    """Block until `{url}/healthz` answers 200 (a server starting up); error after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise ServingError(f"{url} did not become healthy in {timeout:g} s")


class ServingError(RuntimeError):
    """The server refused the request (4xx) or kept failing after all retries."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.num_retries = 0  # attempts repeated after a connection error or a 5xx, in total

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = CONTENT_TYPE,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type} if body is not None else None
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.num_retries += 1
                # once per run on the console (`flows.console` routes "vjepa" warnings there)
                LOGGER.warning("retrying requests to %s after %s", self.http.base_url, last)
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                response = self.http.request(
                    method, path, content=body, headers=headers, params=params
                )
            except httpx.TransportError as error:  # connect/read errors and timeouts
                last = f"{type(error).__name__}: {error}"
                continue
            if response.status_code < 400:
                return response
            detail = _detail(response)
            if response.status_code < 500:
                raise ServingError(f"{response.status_code}: {detail}", response.status_code)
            last = f"{response.status_code}: {detail}"
        raise ServingError(f"{method} {path} failed after {self.retries + 1} attempts ({last})")

    def _post(self, path: str, message: dict[str, Any]) -> dict[str, Any]:
        response = self._send("POST", path, pack(message))
        return dict(msgpack.unpackb(response.content, raw=False))

    def health(self) -> bool:
        """True when `/healthz` answers 200 (one attempt, no retries)."""
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> dict[str, Any]:
        """The `/v1/models` description (served models, default, encoder, batching)."""
        return dict(self._send("GET", "/v1/models").json())


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]


class PlannerClient(_Client):
    """Ask the planner for an action sequence for one robot."""

    def plan(
        self,
        frames: np.ndarray,
        state: np.ndarray,
        goal: np.ndarray,
        previous_plan: np.ndarray | None = None,
        model: str | None = None,
        seed: int | None = None,
    ) -> PlanResult:
        """frames `(1, H, W, 3)` or `(H, W, 3)` uint8, state `(S,)`, goal `(H, W, 3)` uint8."""
        message: dict[str, Any] = {"frames": np.asarray(frames), "state": np.asarray(state)}
        message["goal"] = np.asarray(goal)
        if previous_plan is not None:
            message["previous_plan"] = np.asarray(previous_plan, dtype=np.float32)
        if model is not None:
            message["model"] = model
        if seed is not None:
            message["seed"] = int(seed)
        reply = self._post("/v1/plan", message)
        timing = reply.get("timing", {})
        return PlanResult(
            actions=decode_array("actions", reply["actions"]),
            energy=float(reply["energy"]),
            model=str(reply["model"]),
            energy_spread=_optional_float(reply.get("energy_spread")),
            noop=bool(reply.get("noop", False)),
            batch_size=int(timing.get("batch_size", 1)),
            queue_ms=float(timing.get("queue_ms", 0.0)),
            plan_ms=float(timing.get("plan_ms", 0.0)),
            server_ms=float(timing.get("server_ms", 0.0)),
        )


class EmbeddingClient(_Client):
    """Encode video clips into V-JEPA 2 features."""

    def embed(self, frames: np.ndarray, pool: bool = False) -> np.ndarray:
        """uint8 `(T, H, W, 3)` -> `(N, D)` (or `(B, T, H, W, 3)` -> `(B, N, D)`); pooled: `D`."""
        reply = self._post("/v1/embed", {"frames": np.asarray(frames), "pool": pool})
        return decode_array("features", reply["features"])


class VQAClient(_Client):
    """Ask questions about a video clip."""

    def ask(
        self,
        frames: np.ndarray,
        question: str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> VQAResponse:
        """uint8 frames `(T, H, W, 3)` and a question -> the answer, its token count, timings."""
        message = _vqa_message(question, max_new_tokens, temperature)
        response = self._send("POST", "/v1/vqa", pack({"frames": np.asarray(frames), **message}))
        return VQAResponse.model_validate_json(response.content)

    def ask_video(
        self,
        video: bytes,
        question: str,
        content_type: str = "video/mp4",
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> VQAResponse:
        """An encoded video file (mp4, webm) and a question; the server decodes it."""
        params = _vqa_message(question, max_new_tokens, temperature)
        response = self._send("POST", "/v1/vqa", video, content_type, params)
        return VQAResponse.model_validate_json(response.content)

    def stream(
        self, frames: np.ndarray, question: str, max_new_tokens: int | None = None
    ) -> Iterator[str | VQAResponse]:
        """The answer's text pieces as they are generated, then the whole `VQAResponse`.

        Server-sent events, one attempt (no retries: a stream may fail half-delivered).
        """
        message = {"frames": np.asarray(frames), "stream": True}
        body = pack({**message, **_vqa_message(question, max_new_tokens, None)})
        headers = {"Content-Type": CONTENT_TYPE, "Accept": "text/event-stream"}
        with self.http.stream("POST", "/v1/vqa", content=body, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise ServingError(
                    f"{response.status_code}: {_detail(response)}", response.status_code
                )
            for event, data in _events(response.iter_lines()):
                if event == "token":
                    yield str(json.loads(data)["text"])
                elif event == "answer":
                    yield VQAResponse.model_validate_json(data)
                elif event == "error":
                    raise ServingError(str(json.loads(data).get("detail", data)))


def _vqa_message(
    question: str, max_new_tokens: int | None, temperature: float | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"question": question}
    if max_new_tokens is not None:
        message["max_new_tokens"] = int(max_new_tokens)
    if temperature is not None:
        message["temperature"] = float(temperature)
    return message


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """`(event, data)` pairs of a server-sent event stream."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield event, "\n".join(data)
