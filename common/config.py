"""Service configuration: one attrs class per service, every field a flag
with an environment-variable twin (DESIGN §6).

    @attrs.frozen
    class HeadConfig:
        port: int = option(7777, "--port", env="HEAD_PORT", help="UDP cluster port")

    config = parse_config(HeadConfig, argv, environ)

Precedence: command-line flag, then environment variable, then default.
Parsing reads only the mappings it is given, so it does no I/O itself.
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .logging import LOG_FORMATS, LOG_LEVELS

T = TypeVar("T")
_META = "hydramesh.option"


@attrs.frozen
class _Option:
    flag: str
    env: str | None
    help: str
    choices: tuple[str, ...] | None
    repeat: bool


def option(
    default: Any,
    flag: str,
    *,
    env: str | None = None,
    help: str = "",
    choices: Sequence[str] | None = None,
    repeat: bool = False,
) -> Any:
    """Declare a config field. ``repeat`` makes a tuple: the flag may be
    given several times, and the env var holds a comma-separated list."""
    meta = {_META: _Option(flag, env, help, tuple(choices) if choices else None, repeat)}
    if isinstance(default, (list, tuple)):
        return attrs.field(default=tuple(default), metadata=meta)
    return attrs.field(default=default, metadata=meta)


# Options every service shares, with one spelling of flag and environment name.


def cluster_key_file_option() -> Any:
    return option(
        None, "--cluster-key-file", env="HYDRAMESH_CLUSTER_KEY_FILE", help="file holding the shared cluster key (enables HMAC tags)"
    )


def log_level_option() -> Any:
    return option("info", "--log-level", env="HYDRAMESH_LOG_LEVEL", choices=LOG_LEVELS, help="log level")


def log_format_option() -> Any:
    return option("auto", "--log-format", env="HYDRAMESH_LOG_FORMAT", choices=LOG_FORMATS, help="log rendering (auto: console on a TTY, else JSON)")


def _scalar_type(annotation: Any) -> Any:
    """The converter for an annotation such as ``int``, ``str | None`` or
    ``tuple[str, ...]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple:
        return _scalar_type(typing.get_args(annotation)[0])
    return annotation


def _convert(kind: Any, raw: str, name: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected a boolean, got {raw!r}")
    if kind is Path:
        return Path(raw).expanduser()
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(raw)
    return kind(raw)


def fields_of(cls: type) -> list[tuple[attrs.Attribute, _Option]]:
    return [(f, f.metadata[_META]) for f in attrs.fields(cls) if _META in f.metadata]


def build_parser(cls: type, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser()
    hints = typing.get_type_hints(cls)
    for field, opt in fields_of(cls):
        kind = _scalar_type(hints[field.name])
        env_note = f" [env {opt.env}]" if opt.env else ""
        default_note = "" if field.default in (None, (), "") else f" (default: {_show(field.default)})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": None,
            "help": f"{opt.help}{default_note}{env_note}",
        }
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = lambda raw, kind=kind, name=opt.flag: _convert(kind, raw, name)
            kwargs["metavar"] = field.name.upper()
            if opt.choices:
                kwargs["choices"] = [_convert(kind, c, opt.flag) for c in opt.choices]
            if opt.repeat:
                kwargs["action"] = "append"
        parser.add_argument(opt.flag, **kwargs)
    return parser


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def from_namespace(cls: type[T], namespace: argparse.Namespace, environ: Mapping[str, str]) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field, opt in fields_of(cls):
        given = getattr(namespace, field.name, None)
        if given is not None:
            values[field.name] = tuple(given) if opt.repeat else given
            continue
        raw = environ.get(opt.env) if opt.env else None
        if raw is None or (raw == "" and not opt.repeat):
            continue
        kind = _scalar_type(hints[field.name])
        if opt.repeat:
            values[field.name] = tuple(_convert(kind, part.strip(), opt.env) for part in raw.split(",") if part.strip())
        else:
            value = _convert(kind, raw, opt.env)
            if opt.choices and value not in [_convert(kind, c, opt.env) for c in opt.choices]:
                raise ValueError(f"{opt.env}={raw!r}: choose one of {', '.join(opt.choices)}")
            values[field.name] = value
    return cls(**values)


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    *,
    prog: str | None = None,
    description: str | None = None,
) -> T:
    parser = build_parser(cls, argparse.ArgumentParser(prog=prog, description=description))
    namespace = parser.parse_args(argv)
    try:
        return from_namespace(cls, namespace, environ)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # pragma: no cover  (parser.error exits)


def parse_address(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to a tuple; raise ``ValueError``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"{text!r} is not host:port")
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{text!r} has no host")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host, number
