"""``hydramesh``: the client and local tools.

    hydramesh generate "a lighthouse at dusk" -o out.png --seed 7
    hydramesh up --workers 2           # head + workers + shim on loopback until Ctrl-C
    hydramesh demo                     # the Quickstart's main job
    hydramesh status                   # the head's workers and load
    hydramesh model make-tiny          # write the embedded tiny model
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
import trio

from hydramesh.common.config import parse_address
from hydramesh.common.errors import ErrorCode, InvalidRequest
from hydramesh.common.logging import configure_logging
from hydramesh.common.task import FORMATS, MAX_ID_LEN, GenerateRequest, task_from_json
from hydramesh.runtime.groups import single_exception
from hydramesh.runtime.lifecycle import read_key_file

from .cluster import ClusterClient, ClusterError, new_id
from .local_cluster import ClusterSpec, LocalCluster, describe, fetch_json, free_port
from .progress import ProgressBar

DEFAULT_TARGET = "127.0.0.1:7777"
DEFAULT_SHIM_TARGET = "127.0.0.1:9999"
DEFAULT_STATUS_URL = "http://127.0.0.1:7780/status"
DEFAULT_DEMO_PROMPT = "a lighthouse on a cliff at dusk, oil painting"

# Distinct exit statuses per error code, so scripts can tell them apart.
EXIT_CODES = {
    ErrorCode.INVALID: 3,
    ErrorCode.BUSY: 4,
    ErrorCode.UNKNOWN_MODEL: 5,
    ErrorCode.WORKER_FAILED: 6,
    ErrorCode.CANCELLED: 7,
    ErrorCode.TIMEOUT: 8,
    ErrorCode.INTERNAL: 9,
}


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    return width, height


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="seed for the starting noise (default: the head picks one)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--size", type=_size, help="WIDTHxHEIGHT, multiples of 8 (default: the model's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    parser.add_argument("--negative-prompt", help="what the image should not show")
    parser.add_argument("--model", help="model to use (default: the worker's first model)")
    parser.add_argument("--format", choices=FORMATS, default="png", help="image format (default: png)")


def _request(args: argparse.Namespace, prompt: str) -> GenerateRequest:
    """Build and validate the request here, so mistakes fail before sending."""
    body = {"id": args.id or new_id(), "prompt": prompt, "format": args.format, "progress": True}
    for name in ("seed", "steps", "guidance", "negative_prompt", "model"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.size:
        body["width"], body["height"] = args.size
    request = task_from_json(body)
    assert isinstance(request, GenerateRequest)
    return request


def _report(path: Path, image, total: float, stream=sys.stdout) -> None:
    info = image.info
    timings = info.timings
    worker_time = sum(timings.get(k, 0.0) for k in ("queue_s", "infer_s", "encode_s"))
    print(f"wrote {path} ({info.width}x{info.height} {info.mime}, {info.size / 1024:.1f} KiB, seed {info.seed}, worker {info.worker})", file=stream)
    print(
        f"  worker queue {timings.get('queue_s', 0):.3f} s · inference {timings.get('infer_s', 0):.3f} s · "
        f"encode {timings.get('encode_s', 0):.3f} s · network and head {max(0.0, total - worker_time):.3f} s · "
        f"total {total:.3f} s",
        file=stream,
    )


async def _generate(target, request: GenerateRequest, *, key, timeout: float, show_progress: bool, via: str = "head"):
    bar = ProgressBar(enabled=show_progress and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        async with ClusterClient.connect(target, key=key, bare=via == "shim") as client:
            image = await client.generate(request, timeout=timeout, on_progress=bar.update)
    finally:
        bar.close()
    return image, time.perf_counter() - started


def _fail(exc: ClusterError) -> int:
    field = f" (field {exc.field})" if exc.field else ""
    print(f"hydramesh: {exc.code}: {exc.message}{field}", file=sys.stderr)
    return EXIT_CODES.get(exc.code, 1)


def cmd_generate(args: argparse.Namespace) -> int:
    if args.via not in ("head", "shim"):  # argparse checks choices of flags, not of env defaults
        print(f"hydramesh: --via (or HYDRAMESH_VIA) must be head or shim, not {args.via!r}", file=sys.stderr)
        return 2
    via_shim = args.via == "shim"
    target_text = args.target or (DEFAULT_SHIM_TARGET if via_shim else DEFAULT_TARGET)
    target = parse_address(target_text, default_port=9999 if via_shim else 7777)
    key = None if via_shim else read_key_file(args.cluster_key_file)
    try:
        request = _request(args, args.prompt)
        image, total = trio.run(
            lambda: _generate(target, request, key=key, timeout=args.timeout, show_progress=not args.quiet, via=args.via)
        )
    except InvalidRequest as exc:
        return _fail(ClusterError(ErrorCode.INVALID, exc.detail, field=exc.field))
    except ClusterError as exc:
        return _fail(exc)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(image.data)
    _report(out, image, total)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    spec = ClusterSpec(
        workers=args.workers,
        backend=args.backend,
        model_paths=tuple(args.model_path or ()),
        models_dir=Path(args.models_dir),
        head_port=args.port,
        http_port=args.http_port,
        shim_port=None if args.no_shim else args.shim_port,
        shim_http_port=args.shim_http_port,
        log_format=args.log_format,
    )
    _prepare_models(spec)

    async def main() -> None:
        # Signals stay captured through shutdown: a second Ctrl-C must not
        # interrupt the children's graceful drain half-way.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                cluster = await nursery.start(LocalCluster(spec).run)
                print(f"cluster ready: head udp 127.0.0.1:{spec.head_port}, status http://127.0.0.1:{spec.http_port}/", flush=True)
                for line in describe(await trio.to_thread.run_sync(fetch_json, cluster.status_url)):
                    print(line, flush=True)
                if spec.shim_port is not None:
                    print(f"shim: udp ingress 127.0.0.1:{spec.shim_port}, OpenAI API http://127.0.0.1:{spec.shim_http_port}/v1", flush=True)
                print(f'try: hydramesh generate "a red fox" -o fox.png --target 127.0.0.1:{spec.head_port}', flush=True)
                if spec.shim_port is not None:
                    print(f'     hydramesh generate "a red fox" -o fox.png --via shim --target 127.0.0.1:{spec.shim_port}', flush=True)
                await signals.__anext__()
                print("stopping the cluster…", flush=True)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return 0


def _prepare_models(spec: ClusterSpec) -> float:
    """Write the embedded tiny model once, before workers race for it."""
    if spec.backend != "diffusers" or spec.model_paths:
        return 0.0
    from hydramesh.worker.tiny_model import ensure_tiny_model

    started = time.perf_counter()
    ensure_tiny_model(spec.models_dir)
    return time.perf_counter() - started


def cmd_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    stages: list[tuple[str, float]] = []
    bootstrap = os.environ.pop("HYDRAMESH_BOOTSTRAP_S", None)
    if bootstrap:
        stages.append(("bootstrap the environment", float(bootstrap)))
    models_dir = Path(args.models_dir)
    spec = ClusterSpec(
        workers=args.workers,
        backend="diffusers",
        models_dir=models_dir,
        head_port=free_port(),
        http_port=free_port(),
        log_format="json",
        log_level="warning",
    )
    stages.append(("prepare the embedded model", _prepare_models(spec)))
    args.id, args.format = None, "png"
    try:
        request = _request(args, args.prompt)
    except InvalidRequest as exc:
        return _fail(ClusterError(ErrorCode.INVALID, exc.detail, field=exc.field))
    log_path = Path(args.output).with_suffix(".cluster.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)

    async def main():
        with single_exception():
            async with trio.open_nursery() as nursery:
                t0 = time.perf_counter()
                cluster = await nursery.start(LocalCluster(spec, log_file=log_path).run)
                stages.append((f"start head + {spec.workers} workers", time.perf_counter() - t0))
                image, total = await _generate(cluster.head_address, request, key=None, timeout=args.timeout, show_progress=True)
                stages.append(("generate", total))
                t0 = time.perf_counter()
                nursery.cancel_scope.cancel()
        stages.append(("stop the cluster", time.perf_counter() - t0))
        return image, total

    try:
        image, total = trio.run(main)
    except ClusterError as exc:
        print(f"cluster log: {log_path}", file=sys.stderr)
        return _fail(exc)
    out = Path(args.output)
    out.write_bytes(image.data)
    print(f'prompt: "{args.prompt}"')
    _report(out.resolve(), image, total)
    print("time per stage:")
    for name, seconds in stages:
        print(f"  {name:<28} {seconds:7.3f} s")
    print(f"  {'total':<28} {time.perf_counter() - started + float(bootstrap or 0):7.3f} s")
    print(f"cluster log: {log_path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = fetch_json(args.url)
    if status is None:
        print(f"hydramesh: no head answers at {args.url}", file=sys.stderr)
        return 1
    print(f"head {status['address'][0]}:{status['address'][1]} · models: {', '.join(status['models']) or 'none'}")
    for line in describe(status):
        print(line)
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from hydramesh.worker.tiny_model import ensure_tiny_model

    path = ensure_tiny_model(Path(args.dir))
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydramesh", description="HydraMesh: text-to-image on a cluster of GPU workers.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one image through a head (or a shim)")
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output", default="out.png", help="file to write (default: out.png)")
    gen.add_argument(
        "--via",
        choices=("head", "shim"),
        default=os.environ.get("HYDRAMESH_VIA", "head"),
        help="speak DCF to a head, or bare JSON to a shim's UDP ingress (default: head) [env HYDRAMESH_VIA]",
    )
    gen.add_argument(
        "--target",
        default=os.environ.get("HYDRAMESH_TARGET"),
        help=f"address HOST:PORT (default: {DEFAULT_TARGET}, with --via shim {DEFAULT_SHIM_TARGET}) [env HYDRAMESH_TARGET]",
    )
    gen.add_argument("--id", help=f"request id, the idempotency key (≤ {MAX_ID_LEN} chars; default: random)")
    gen.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default: 600)")
    gen.add_argument(
        "--cluster-key-file", type=Path, default=os.environ.get("HYDRAMESH_CLUSTER_KEY_FILE"), help="shared cluster key (not used --via shim)"
    )
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_request_options(gen)
    gen.set_defaults(func=cmd_generate)

    up = sub.add_parser("up", help="run a head, workers and a shim on loopback until Ctrl-C")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--backend", choices=("diffusers", "null"), default="diffusers")
    up.add_argument("--model-path", action="append", help="model for every worker (repeatable; default: the tiny model)")
    up.add_argument("--models-dir", default="local-models")
    up.add_argument("--port", type=int, default=7777, help="head UDP port")
    up.add_argument("--http-port", type=int, default=7780, help="head status/metrics port")
    up.add_argument("--shim-port", type=int, default=9999, help="the shim's UDP ingress port")
    up.add_argument("--shim-http-port", type=int, default=8080, help="the shim's OpenAI-compatible HTTP port")
    up.add_argument("--no-shim", action="store_true", help="start no shim")
    up.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="start a local cluster, generate one image with the tiny model, stop")
    demo.add_argument("prompt", nargs="?", default=DEFAULT_DEMO_PROMPT)
    demo.add_argument("-o", "--output", default="out/demo.png")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--models-dir", default="local-models")
    demo.add_argument("--timeout", type=float, default=300.0)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--steps", type=int, default=8)
    demo.add_argument("--size", type=_size, default=(64, 64))
    demo.add_argument("--guidance", type=float)
    demo.add_argument("--negative-prompt")
    demo.add_argument("--model")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", help="show the head's workers and load")
    status.add_argument("--url", default=os.environ.get("HYDRAMESH_STATUS_URL", DEFAULT_STATUS_URL))
    status.set_defaults(func=cmd_status)

    model = sub.add_parser("model", help="model tools")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser("make-tiny", help="write the embedded tiny model (diffusers dir + single file)")
    tiny.add_argument("dir", nargs="?", default="local-models")
    tiny.set_defaults(func=cmd_make_tiny)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging("client", "cli", level="warning", fmt="console", stream=sys.stderr)
    structlog.contextvars.clear_contextvars()
    try:
        sys.exit(args.func(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
