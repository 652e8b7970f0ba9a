"""The Hugging Face token: from the environment, a file, or a ``.env`` file.

Precedence: ``HF_TOKEN``, then the file named by ``HF_TOKEN_FILE`` (how
systemd credentials and Kubernetes secrets arrive), then ``HF_TOKEN=`` in the
``.env`` file. An empty value means no token. The cache location is the Hub
library's own ``HF_HOME``, and ``HF_HUB_OFFLINE=1`` serves from a warm cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, ``export`` prefixes and quotes allowed."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def hub_token(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> str | None:
    token = environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    token_file = environ.get("HF_TOKEN_FILE", "").strip()
    if token_file:
        return Path(token_file).read_text().strip() or None
    if env_file is not None and env_file.is_file():
        return read_env_file(env_file).get("HF_TOKEN", "").strip() or None
    return None
