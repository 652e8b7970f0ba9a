"""The installed package's version, reported in heartbeats."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("hydramesh")
except PackageNotFoundError:  # pragma: no cover  (running from a bare checkout)
    VERSION = "0+unknown"
