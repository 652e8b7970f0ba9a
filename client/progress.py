"""A one-line progress bar on stderr for ``hydramesh generate``."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import attrs


@attrs.define(eq=False)
class ProgressBar:
    stream: TextIO = sys.stderr
    width: int = 30
    enabled: bool = attrs.Factory(lambda self: self.stream.isatty(), takes_self=True)
    started: float = attrs.Factory(time.perf_counter)
    _last: str = ""

    def update(self, request_id: str, step: int, steps: int) -> None:
        if not self.enabled or steps <= 0:
            return
        filled = round(self.width * step / steps)
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] step {step}/{steps}  {time.perf_counter() - self.started:5.1f} s"
        if line != self._last:
            self.stream.write(line)
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
