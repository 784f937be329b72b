"""`vjepa serve`: run the embedding + fleet planning (+ VQA) HTTP service, or write its Serve config."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from flows.commands.common import UsageError, fail
from tasks.progress import message

ORDER = 80
DEFAULT_TOKEN_ENV = "VJEPA_SERVE_TOKEN"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve embeddings, fleet CEM planning and VQA over HTTP (Ray Serve)",
        description=(
            "Start Ray Serve with one HTTP ingress (/v1/embed, /v1/plan, /v1/vqa, /v1/models, "
            "/healthz) in front of an embedding deployment, a planner deployment that batches "
            "the requests of many robots and, with --vqa-model, a VQA deployment that batches "
            "questions. Runs until Ctrl-C. With --config-out, write the Serve config file (for "
            "`serve deploy` or a KubeRay RayService) and exit."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="NAME=URI",
        help="world model bundle (folder or s3:// prefix); repeat for more; the first is default",
    )
    parser.add_argument(
        "--encoder", help="encoder checkpoint for /v1/embed (default: first bundle's)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="planner replicas (default 1)")
    parser.add_argument(
        "--max-replicas", type=int, help="autoscale the planner between --replicas and this"
    )
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per planner replica")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per planner replica")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --token-env (anyone who can reach it may call it)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log one line per request (off by default)"
    )
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--token-env",
        metavar="VAR",
        help=f"environment variable holding the bearer token (--config-out: {DEFAULT_TOKEN_ENV})",
    )
    parser.add_argument("--max-batch-size", type=int, default=64, help="robots per batch (64)")
    parser.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill (5 ms)"
    )
    parser.add_argument(
        "--no-batching", action="store_true", help="plan every request on its own (baseline)"
    )
    parser.add_argument("--max-body-mb", type=float, default=8.0, help="request size limit (8)")
    parser.add_argument("--cache-dir", default="~/.cache/vjepa/serving", help="copies of s3 models")
    parser.add_argument("--config-out", metavar="FILE", help="write the Serve config YAML and exit")
    add_vqa_arguments(parser)
    parser.set_defaults(handler=run)


def add_vqa_arguments(parser: argparse.ArgumentParser) -> None:
    """`--vqa-*`: host a VQA model (`/v1/vqa`); unset values keep `serving.config.VQASettings`'."""
    group = parser.add_argument_group("video question answering (/v1/vqa)")
    group.add_argument(
        "--vqa-model", metavar="URI", help="model folder written by `vjepa align` (local or s3://)"
    )
    group.add_argument("--vqa-replicas", type=int, help="VQA replicas (default 1)")
    group.add_argument("--vqa-num-cpus", type=float, help="CPUs per VQA replica (default 1)")
    group.add_argument("--vqa-num-gpus", type=float, help="GPUs per VQA replica (default 0)")
    group.add_argument(
        "--vqa-max-batch-size", type=int, help="questions per generate call (default 16)"
    )


def vqa_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `vqa` part of the config from the `--vqa-*` flags (`--no-batching` applies too)."""
    from serving.config import VQASettings

    defaults = VQASettings()
    replicas = defaults.replicas.model_dump()
    for key, value in (
        ("num_replicas", args.vqa_replicas),
        ("num_cpus", args.vqa_num_cpus),
        ("num_gpus", args.vqa_num_gpus),
    ):
        if value is not None:
            replicas[key] = value
    batching = defaults.batching.model_dump()
    batching["enabled"] = not args.no_batching
    if args.vqa_max_batch_size is not None:
        batching["max_batch_size"] = args.vqa_max_batch_size
    return {"model": args.vqa_model, "replicas": replicas, "batching": batching}


def build_config(args: argparse.Namespace, for_file: bool) -> Any:
    """A validated `ServingConfig` from the flags; bad values are a `UsageError`."""
    from pydantic import SecretStr, ValidationError

    from serving.config import ConfigError, ServingConfig, parse_checkpoints

    token_env = args.token_env or (DEFAULT_TOKEN_ENV if for_file else None)
    try:
        models = parse_checkpoints(args.checkpoint)
        token = None
        if token_env and not for_file:
            value = os.environ.get(token_env, "")
            if not value:
                raise ConfigError(f"--token-env {token_env}: the variable is not set or empty")
            token = SecretStr(value)
        planner: dict[str, Any] = {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus}
        if args.max_replicas is not None:
            planner.update(
                num_replicas=None, min_replicas=args.replicas, max_replicas=args.max_replicas
            )
        else:
            planner["num_replicas"] = args.replicas
        config = ServingConfig.model_validate(
            {
                "models": models,
                "encoder": args.encoder,
                "token_env": token_env,
                "host": args.host,
                "port": args.port,
                "cache_dir": args.cache_dir,
                "access_log": args.access_log,
                "planner": planner,
                "limits": {"max_body_bytes": int(args.max_body_mb * 1024 * 1024)},
                "batching": {
                    "enabled": not args.no_batching,
                    "max_batch_size": args.max_batch_size,
                    "wait_timeout_s": args.batch_wait_ms / 1000,
                },
                "vqa": vqa_settings(args),
            }
        )
        if for_file:  # the token lives in the cluster's secret, read by the replicas
            return config
        if token is not None:
            config = config.model_copy(update={"token": token})
        config.resolve_token()
        return config
    except (ConfigError, ValidationError) as error:
        raise UsageError(str(error)) from None


def check_exposure(host: str, token_env: str | None, insecure: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless the operator said --insecure."""
    if token_env or insecure or is_loopback(host):
        return
    raise UsageError(
        f"--host {host} accepts connections from other machines, and without --token-env "
        "anyone who reaches it can plan and embed; set --token-env VAR (a bearer token in $VAR), "
        "or pass --insecure to serve without auth on purpose"
    )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name may resolve to any interface: treat it as exposed
        return False


def check_bundles(models: dict[str, str]) -> None:
    """Fail early, naming the problem, when a bundle is missing or its spec is unusable."""
    from modeling.world_model import SPEC_FILE, WorldModelSpec
    from tasks.storage import filesystem, join

    for name, uri in models.items():
        fs, path = filesystem(join(uri, SPEC_FILE))
        if not fs.exists(path):
            raise UsageError(f"--checkpoint {name}={uri}: no {SPEC_FILE} there (not a bundle?)")
        try:
            WorldModelSpec.from_dict(json.loads(fs.cat_file(path))).cem_config()
        except (ValueError, TypeError, KeyError) as error:
            raise UsageError(f"--checkpoint {name}={uri}: invalid {SPEC_FILE}: {error}") from None


def check_vqa_model(uri: str) -> None:
    """Fail early when the VQA folder has no usable `vlm.json` or its LM folder no tokenizer."""
    from modeling.checkpoints import CheckpointError
    from modeling.vlm_checkpoints import MANIFEST, VLMManifest
    from tasks.storage import filesystem, join

    fs, path = filesystem(join(uri, MANIFEST))
    if not fs.exists(path):
        raise UsageError(f"--vqa-model {uri}: no {MANIFEST} there (not written by vjepa align?)")
    try:
        manifest = VLMManifest.from_json(fs.cat_file(path).decode())
    except (CheckpointError, KeyError, TypeError, ValueError) as error:
        raise UsageError(f"--vqa-model {uri}: invalid {MANIFEST}: {error}") from None
    lm_fs, lm_path = filesystem(manifest.lm.source)
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if not any(lm_fs.exists(f"{lm_path.rstrip('/')}/{name}") for name in names):
        raise UsageError(
            f"--vqa-model {uri}: its language model {manifest.lm.source} has no tokenizer "
            "files; save the tokenizer into the LM folder (tokenizer.save_pretrained)"
        )


def write_config(config: Any, target: str) -> None:
    import yaml

    from serving.app import serve_config

    Path(target).write_text(yaml.safe_dump(serve_config(config), sort_keys=False))
    print(f"wrote the Serve config to {target}")
    if config.token_env:
        print(f"replicas read the bearer token from ${config.token_env}; set it from a secret")


class Stop(Exception):
    """SIGTERM (Kubernetes, Docker, systemd): stop like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the shutdown short
    raise Stop()


def serve_forever(config: Any) -> None:
    """Run until Ctrl-C or SIGTERM, then shut Serve down (draining replicas) and Ray."""
    import httpx
    import ray
    from ray import serve

    from serving.app import APP_NAME, build_app
    from serving.proxy_guard import logging_config, start_options

    # no RAY_ADDRESS: a Ray of our own (never a `ray start` cluster found on the machine)
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", ignore_reinit_error=True)
    signal.signal(signal.SIGTERM, _on_sigterm)  # after ray.init, which installs its own
    try:
        serve.start(**start_options(config))
        try:
            app = build_app(config)
            serve.run(app, name=APP_NAME, route_prefix="/", logging_config=logging_config(config))
        except RuntimeError as error:  # a replica failed to start; Serve's message says why
            raise ServeError(f"the application did not start: {error}") from None
        url = f"http://{config.host}:{config.port}"
        httpx.get(f"{url}/healthz", timeout=30).raise_for_status()
        models = ", ".join(config.models)
        print(f"serving {models} at {url} (Ctrl-C or SIGTERM to stop)", flush=True)
        while True:
            time.sleep(1.0)
    except (KeyboardInterrupt, Stop) as stop:
        name = "SIGTERM" if isinstance(stop, Stop) else "Ctrl-C"
        message(f"stopping ({name}): draining requests")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        drain(APP_NAME)
        serve.shutdown()
        ray.shutdown()
        message("stopped")


def drain(app_name: str) -> None:
    """Delete the app while the proxies still run: replicas finish what they hold (Serve's
    graceful shutdown), answers still get out, and new requests get 503 from the proxy guard.
    `serve.shutdown()` alone stops proxies and replicas at once and drops requests in flight.
    """
    from ray import serve

    try:
        serve.delete(app_name)
    except Exception as error:  # not deployed (a failed start) or Serve already gone
        message(f"drain skipped: {error}")


class ServeError(Exception):
    """The application could not be deployed (exit code 1)."""


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1 or (args.max_replicas is not None and args.max_replicas < args.replicas):
        raise UsageError("--replicas must be >= 1 and --max-replicas >= --replicas")
    config = build_config(args, for_file=bool(args.config_out))
    check_exposure(config.host, config.token_env, args.insecure)
    if args.config_out:
        write_config(config, args.config_out)
        return 0
    check_bundles(config.models)
    if config.vqa.model is not None:
        check_vqa_model(config.vqa.model)
    try:
        serve_forever(config)
    except ServeError as error:
        return fail(str(error), code=1)
    return 0
