"""The HTTP ingress: one FastAPI app in front of the planner and embedder deployments.

Order of checks on a POST: bearer token (401) -> content type (415) -> body size (413, from
`Content-Length` and while streaming) -> msgpack/npy decoding (400/422) -> shape, dtype and
finiteness against the model's spec (422, naming the field) -> the deployment call -> a
non-finite answer is a 422, never a success. Client errors are JSON `{"detail", "field"}`; a
replica that died mid-request gives 503 with `Retry-After` (the client retries). Nothing in a
request is ever unpickled. The bearer check and the per-route metrics are ASGI middlewares
(`serving.auth.BearerGuard`, `serving.metrics.RouteMetrics`), so they hold for every route.

No `from __future__ import annotations` here: FastAPI must see the real `Request` annotation
of the route methods, which Serve rewraps.
"""

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from serving.auth import BearerGuard, check_bearer
from serving.codec import (
    CONTENT_TYPE,
    MSGPACK_TYPES,
    RequestError,
    check_finite_result,
    pack,
    unpack,
)
from serving.config import ServingConfig
from serving.metrics import RouteMetrics, record_batch_size
from serving.schemas import (
    EMBED_FIELDS,
    PLAN_FIELDS,
    EncoderInfo,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    parse_embed,
    parse_plan,
)
from serving.video import decode_video
from serving.vqa_schemas import (
    VIDEO_TYPES,
    VQA_FIELDS,
    VQAInfo,
    VQARequest,
    VQAResponse,
    parse_query,
    parse_vqa,
    video_options,
)

logger = logging.getLogger("ray.serve")
UNAVAILABLE = (RayActorError, BackPressureError, DeploymentUnavailableError, TimeoutError)

app = FastAPI(
    title="V-JEPA 2 serving",
    description="Embeddings and fleet CEM planning; arrays travel as msgpack + .npy.",
    version="1",
)
# every route: the bearer check (all but /healthz, docs included), then metrics around it all
app.add_middleware(BearerGuard)
app.add_middleware(RouteMetrics)


@app.exception_handler(RequestError)
async def _request_error(_: Request, error: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    if error.status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int, types: tuple[str, ...] = MSGPACK_TYPES) -> bytes:
    """The raw body after the content-type and size checks."""
    sent = content_type(request)
    if sent not in types:
        wanted = CONTENT_TYPE if types == MSGPACK_TYPES else f"one of {', '.join(types)}"
        raise RequestError(415, f"Content-Type must be {wanted}, got {sent or 'nothing'}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def msgpack_response(message: dict[str, Any]) -> Response:
    return Response(content=pack(message), media_type=CONTENT_TYPE)


# defined before the class: serve.ingress pickles the app's routes where it is applied
async def sse_events(
    first: Any, pieces: AsyncIterator[Any], started: float
) -> AsyncIterator[bytes]:
    """Server-sent events: `token` events with text pieces, then `answer` (or `error`)."""
    try:
        async for piece in _chain(first, pieces):
            if isinstance(piece, VQAResponse):
                timing = piece.timing.model_copy(
                    update={"server_ms": (time.perf_counter() - started) * 1000}
                )
                payload = piece.model_copy(update={"timing": timing}).model_dump_json()
                yield f"event: answer\ndata: {payload}\n\n".encode()
            else:
                yield f"event: token\ndata: {json.dumps({'text': piece})}\n\n".encode()
    except Exception as error:  # headers are sent: the failure travels as an event
        logger.warning("streamed answer failed: %s", error)
        message = json.dumps({"detail": "the answer failed mid-stream; retry"})
        yield f"event: error\ndata: {message}\n\n".encode()


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


@serve.deployment(name="Ingress")
@serve.ingress(app)
class Ingress:
    """Routes, auth and validation; the model work happens in the bound deployments."""

    def __init__(
        self,
        planner: DeploymentHandle,
        embedder: DeploymentHandle,
        config: ServingConfig,
        vqa: DeploymentHandle | None = None,
    ) -> None:
        self.planner = planner
        self.embedder = embedder
        self.vqa = vqa
        self._vqa_info: VQAInfo | None = None
        self.config = config
        self.token = config.resolve_token()
        app.state.bearer_token = self.token  # read by BearerGuard
        self._models: dict[str, ModelInfo] | None = None
        self._encoder: EncoderInfo | None = None

    async def _call(self, handle: DeploymentHandle, method: str, *args: Any) -> Any:
        return await self._await(getattr(handle, method).remote(*args), method)

    async def _await(self, pending: Any, method: str) -> Any:
        """A deployment's answer; a dead or restarting replica is a 503 (clients retry)."""
        try:
            return await pending
        except UNAVAILABLE as error:
            logger.warning("deployment unavailable for %s: %s", method, error)
            raise RequestError(503, f"the {method} service is restarting; retry") from None
        except RayTaskError as error:  # a replica refused the request (checks that need the model)
            cause = getattr(error, "cause", None)
            if isinstance(cause, RequestError):
                raise RequestError(cause.status, cause.message, cause.field) from None
            raise

    async def models_info(self) -> dict[str, ModelInfo]:
        if self._models is None:
            self._models = await self._call(self.planner, "describe")
        return self._models

    async def encoder_info(self) -> EncoderInfo:
        if self._encoder is None:
            self._encoder = await self._call(self.embedder, "describe")
        return self._encoder

    @app.get("/healthz")
    async def healthz(self) -> HealthResponse:
        return HealthResponse()

    @app.get("/v1/models")
    async def models(self, request: Request) -> ModelsResponse:
        check_bearer(request.headers.get("authorization"), self.token)
        batching = self.config.batching
        return ModelsResponse(
            default_model=self.config.default_model,
            models=list((await self.models_info()).values()),
            encoder=await self.encoder_info(),
            batching=batching.enabled,
            max_batch_size=batching.effective_batch_size,
            vqa=await self.vqa_info() if self.vqa is not None else None,
        )

    @app.post("/v1/plan")
    async def plan(self, request: Request) -> Response:
        started = time.perf_counter()
        check_bearer(request.headers.get("authorization"), self.token)
        message = unpack(await read_body(request, self.config.limits.max_body_bytes), PLAN_FIELDS)
        parsed = parse_plan(
            message,
            await self.models_info(),
            self.config.default_model,
            self.config.limits.max_image_size,
        )
        result = await self._call(self.planner, "plan", parsed)
        check_finite_result("plan", result.actions, result.energy)
        record_batch_size("/v1/plan", result.batch_size)
        result = result.model_copy(update={"server_ms": (time.perf_counter() - started) * 1000})
        return msgpack_response(result.to_message())

    @app.post("/v1/embed")
    async def embed(self, request: Request) -> Response:
        check_bearer(request.headers.get("authorization"), self.token)
        limits = self.config.limits
        message = unpack(await read_body(request, limits.max_body_bytes), EMBED_FIELDS)
        parsed = parse_embed(
            message, await self.encoder_info(), limits.max_embed_frames, limits.max_image_size
        )
        features: np.ndarray = await self._call(self.embedder, "embed", parsed)
        check_finite_result("embedding", features)
        if not parsed.batched:
            features = features[0]  # (N, D) or (D,)
        return msgpack_response({"features": features.astype(np.float32)})

    def vqa_handle(self) -> DeploymentHandle:
        if self.vqa is None:
            raise RequestError(404, "no VQA model is served here (vjepa serve --vqa-model DIR)")
        return self.vqa

    async def vqa_info(self) -> VQAInfo:
        if self._vqa_info is None:
            self._vqa_info = await self._call(self.vqa_handle(), "describe")
        return self._vqa_info

    @app.post("/v1/vqa", response_model=VQAResponse)
    async def ask(self, request: Request) -> Response:
        started = time.perf_counter()
        check_bearer(request.headers.get("authorization"), self.token)
        parsed = await self._parse_vqa(request)
        if parsed.stream:
            handle = self.vqa_handle().options(stream=True)
            pieces = cast(AsyncIterator[Any], handle.stream_answer.remote(parsed))
            # the first piece before the headers: a refused request is still a 4xx
            first = await self._await(anext(pieces), "stream_answer")
            events = sse_events(first, pieces, started)
            return StreamingResponse(events, media_type="text/event-stream")
        result: VQAResponse = await self._call(self.vqa_handle(), "answer", parsed)
        record_batch_size("/v1/vqa", result.timing.batch_size)
        timing = result.timing.model_copy(
            update={"server_ms": (time.perf_counter() - started) * 1000}
        )
        return JSONResponse(result.model_copy(update={"timing": timing}).model_dump(mode="json"))

    async def _parse_vqa(self, request: Request) -> VQARequest:
        """A msgpack body (frames as .npy) or an encoded video with the question in the query."""
        info, settings = await self.vqa_info(), self.config.vqa
        if content_type(request) in MSGPACK_TYPES:
            body = await read_body(request, self.config.limits.max_body_bytes)
            message = unpack(body, VQA_FIELDS)
            return parse_vqa(message, info, settings, self.config.limits.max_image_size)
        body = await read_body(request, settings.max_video_bytes, (*VIDEO_TYPES, *MSGPACK_TYPES))
        options = video_options(parse_query(request.scope.get("query_string", b"")), settings)
        decoding = time.perf_counter()
        frames = await decode_video(
            body,
            info.image_size,
            info.fps,
            info.max_frames,
            info.tubelet_size,
            settings.video_timeout_s,
        )
        decode_ms = (time.perf_counter() - decoding) * 1000
        return VQARequest(frames=frames[None], decode_ms=decode_ms, **options)
