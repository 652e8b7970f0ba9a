"""Flags with environment twins: precedence, types, lists, choices."""

from pathlib import Path

import attrs
import pytest

from hydramesh.common.config import option, parse_address, parse_config


@attrs.frozen
class Example:
    port: int = option(7777, "--port", env="EX_PORT", help="a port")
    ratio: float = option(0.5, "--ratio", env="EX_RATIO")
    name: str = option("", "--name", env="EX_NAME")
    mode: str = option("a", "--mode", env="EX_MODE", choices=("a", "b"))
    paths: tuple[str, ...] = option((), "--path", env="EX_PATHS", repeat=True)
    key: Path | None = option(None, "--key", env="EX_KEY")
    flag: bool = option(True, "--flag", env="EX_FLAG")


def test_defaults():
    assert parse_config(Example, [], {}) == Example()


def test_flag_beats_environment_beats_default():
    assert parse_config(Example, [], {"EX_PORT": "1"}).port == 1
    assert parse_config(Example, ["--port", "2"], {"EX_PORT": "1"}).port == 2


def test_types_lists_and_booleans():
    config = parse_config(
        Example, ["--ratio", "0.25", "--path", "x", "--path", "y", "--no-flag"], {"EX_KEY": "~/k", "EX_NAME": "n"}
    )
    assert config.ratio == 0.25 and config.paths == ("x", "y") and config.flag is False
    assert config.key == Path("~/k").expanduser() and config.name == "n"
    assert parse_config(Example, [], {"EX_PATHS": "a, b,,c", "EX_FLAG": "no"}) == Example(paths=("a", "b", "c"), flag=False)


@pytest.mark.parametrize(("argv", "environ"), [(["--mode", "c"], {}), ([], {"EX_MODE": "c"}), ([], {"EX_PORT": "x"}), ([], {"EX_FLAG": "maybe"})])
def test_bad_values_exit_with_usage(argv, environ, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(Example, argv, environ)
    assert info.value.code == 2


def test_help_names_the_environment_twin(capsys):
    with pytest.raises(SystemExit):
        parse_config(Example, ["--help"], {})
    out = capsys.readouterr().out
    assert "[env EX_PORT]" in out and "(default: 7777)" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7777", ("127.0.0.1", 7777)), ("head", ("head", 7777)), ("[::1]:9", ("::1", 9)), ("h:0", ("h", 0))],
)
def test_parse_address(text, expected):
    assert parse_address(text, default_port=7777) == expected


@pytest.mark.parametrize("text", [":80", "h:70000", "h:x"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)
