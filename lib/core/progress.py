"""Progress of long loops: a tqdm bar on a terminal; in a headless notebook (papermill
gives the kernel no terminal) either about ten plain lines per loop or nothing, so the
executed notebooks stay readable. ``MDFLD_PROGRESS=bar`` forces the bar."""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


def _terminal() -> bool:
    return sys.stderr.isatty() or os.environ.get("MDFLD_PROGRESS") == "bar"


def progress(total: int, initial: int = 0, desc: str = "", enabled: bool = True, lines: bool = True):
    """A bar with tqdm's interface (``update``, ``set_postfix``, ``close``): on a terminal a
    tqdm bar; elsewhere ten log lines when ``lines``, else silent."""
    if enabled and _terminal():
        return tqdm(total=total, initial=initial, desc=desc)
    if enabled and lines:
        return _LogLines(total, initial, desc)
    return tqdm(total=total, initial=initial, disable=True)


def track(iterable, desc: str = "", enabled: bool = True, lines: bool = False, total: int | None = None):
    """Iterate with a progress bar (see ``progress``); silent in a notebook unless ``lines``."""
    bar = progress(len(iterable) if total is None else total, 0, desc, enabled, lines)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


class _LogLines:
    """tqdm's interface, printing a line at every tenth of the run."""

    def __init__(self, total: int, initial: int, desc: str):
        self.total, self.n, self.desc = total, initial, desc
        self.every = max(1, total // 10)
        self.t0, self.start, self.postfix = time.perf_counter(), initial, {}

    def update(self, k: int = 1) -> None:
        before, self.n = self.n, self.n + k
        if self.n // self.every > before // self.every or self.n == self.total:
            dt = time.perf_counter() - self.t0
            rate = (self.n - self.start) / dt if dt > 0 else float("nan")
            extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.n}/{self.total}  {extra}  ({dt / 60:.1f} min, {rate:.2f}/s)".replace("   ", " "),
                  flush=True)

    def set_postfix(self, d: dict) -> None:
        self.postfix = d

    def close(self) -> None:
        pass
