"""Closed-loop HTTP load shared by the serving benchmarks (`serving.py`, `vqa.py`).

Each simulated client posts its own body back to back (asyncio + httpx on loopback) for a
fixed time and at least a fixed count, after one warm-up request each. A reply-reader
callback pulls what a benchmark wants from every 200 reply into the shared record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# (response, record) -> None: append this reply's figures to the record's lists
ReplyReader = Callable[[Any, dict[str, list[Any]]], None]


async def client_loop(
    client: Any,
    path: str,
    body: bytes,
    stop_at: float,
    minimum: int,
    record: dict[str, list[Any]],
    read_reply: ReplyReader,
) -> None:
    """One client: post `body` until `stop_at` and at least `minimum` times."""
    done = 0
    while done < minimum or time.monotonic() < stop_at:
        started = time.perf_counter()
        response = await client.post(path, content=body)
        if response.status_code != 200:
            record["errors"].append(response.status_code)
            continue
        record["latency"].append((time.perf_counter() - started) * 1000)
        read_reply(response, record)
        done += 1


async def closed_loop(
    url: str,
    path: str,
    bodies: list[bytes],
    seconds: float,
    minimum: int,
    read_reply: ReplyReader,
    timeout: float = 600,
) -> tuple[dict[str, list[Any]], float]:
    """One client per body against `url + path`; the record and the measured seconds."""
    import httpx

    limits = httpx.Limits(max_connections=len(bodies) + 4)
    headers = {"Content-Type": "application/msgpack"}
    record: dict[str, list[Any]] = {"latency": [], "errors": []}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, headers=headers, timeout=timeout
    ) as client:
        await asyncio.gather(*(client.post(path, content=b) for b in bodies))  # warm-up
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(
            *(client_loop(client, path, b, stop_at, minimum, record, read_reply) for b in bodies)
        )
        return record, time.monotonic() - started


def latency_figures(record: dict[str, list[Any]], elapsed: float) -> dict[str, float]:
    """Replies/s, p50/p99 latency (ms), the reply and error counts of a record."""
    latency = np.array(record["latency"])
    return {
        "per_s": len(latency) / elapsed,
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "requests": len(latency),
        "errors": len(record["errors"]),
    }
