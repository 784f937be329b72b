"""Memory of Serve's HTTP proxy before and after clients send 32 MB request headers.

Starts a local Ray, then Serve twice on loopback: with the stock proxy and with the proxy
guard of `serving.proxy_guard` (what `vjepa serve` runs). Each time a trivial app is deployed,
the proxy's RSS is read (psutil), a few clients send one 32 MB header each, and the RSS is
read again right after and a few seconds later. Prints a table, then one JSON line whose
"ratio" is the stock proxy's growth over the guarded proxy's growth.

    .venv/bin/python -m benchmarks.serving_header_memory [--header-mb 32] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from dataclasses import asdict, dataclass

import psutil

MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    proxy: str
    rss_before_mib: float
    rss_after_mib: float
    rss_settled_mib: float
    answers: str

    @property
    def growth_mib(self) -> float:
        return self.rss_settled_mib - self.rss_before_mib


def proxy_process() -> psutil.Process:
    """The proxy of the Ray this script started (its descendants: not another user's Serve)."""
    for process in psutil.Process().children(recursive=True):
        try:
            if any("ProxyActor" in part for part in process.cmdline()):
                return process
        except psutil.NoSuchProcess:
            continue
    raise RuntimeError("no Serve proxy process found")


def send_huge_header(port: int, size: int) -> str:
    """One request with a `size`-byte header; the first line of the answer (or the error)."""
    line = b"X-Padding: " + b"a" * size + b"\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
            return sock.recv(200).split(b"\r\n")[0].decode() or "closed"
    except OSError as error:
        return type(error).__name__


def measure(name: str, guarded: bool, port: int, size: int, clients: int) -> Case:
    from fastapi import FastAPI
    from ray import serve

    from serving.config import ServingConfig
    from serving.proxy_guard import start_options

    options: dict[str, object] = {"http_options": {"host": "127.0.0.1", "port": port}}
    if guarded:
        options = start_options(ServingConfig(models={"a": "/unused"}), port)
    app = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(app)
    class Health:
        @app.get("/healthz")
        def healthz(self) -> dict[str, str]:
            return {"status": "ok"}

    try:
        serve.start(**options)  # type: ignore[arg-type]
        serve.run(Health.bind(), name="health", route_prefix="/")  # type: ignore[attr-defined]
        proxy = proxy_process()
        before = proxy.memory_info().rss / MiB
        answers = {send_huge_header(port, size) for _ in range(clients)}
        after = proxy.memory_info().rss / MiB
        time.sleep(5.0)
        settled = proxy.memory_info().rss / MiB
        return Case(name, before, after, settled, " | ".join(sorted(answers)))
    finally:
        serve.shutdown()
        wait_until_no_proxy()


def wait_until_no_proxy(timeout: float = 60.0) -> None:
    """So that the next case measures its own proxy, not the last one on its way out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            proxy_process()
        except RuntimeError:
            return
        time.sleep(0.5)


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header-mb", type=float, default=32.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    size = int(args.header_mb * MiB)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cases = [
            measure("stock", False, args.port, size, args.clients),
            measure("guarded", True, args.port, size, args.clients),
        ]
    finally:
        ray.shutdown()
    print(f"{args.clients} clients x {args.header_mb:g} MB header each")
    print(f"{'proxy':8} {'before MiB':>11} {'after MiB':>10} {'+5 s MiB':>9} {'growth':>8}  answer")
    for case in cases:
        print(
            f"{case.proxy:8} {case.rss_before_mib:11.1f} {case.rss_after_mib:10.1f} "
            f"{case.rss_settled_mib:9.1f} {case.growth_mib:8.1f}  {case.answers}"
        )
    stock, guarded = cases
    ratio = stock.growth_mib / max(guarded.growth_mib, 1.0)
    result = {"ratio": round(ratio, 2), "cases": [asdict(case) for case in cases]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
