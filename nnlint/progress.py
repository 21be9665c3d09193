"""Progress of a check that takes a while: after `delay` seconds, one status line on stderr that says
which pass runs, how many module calls it has seen and how long it has taken, redrawn in place in a
terminal or a notebook, and cleared when the check ends.

    nnlint: GPT2LMHeadModel (124 modules): train forward, 310 module calls, 3.2 s

A daemon thread reads the counters the tracer updates anyway (the pass's name, the recorder's list of
module calls), so the pass itself pays nothing per op. Off where nobody watches (stderr not a terminal
and not a notebook, e.g. in CI or under pytest's capture), unless asked for.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional

DELAY = 2.0        # a check shorter than this shows nothing
INTERVAL = 0.5     # how often the line is redrawn


def interactive(stream=None) -> bool:
    """Someone is watching: stderr is a terminal, or a Jupyter kernel draws it."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules


class Progress:
    """`with Progress(model_name, modules) as p:` ... `p.phase = "backward"`; `p.calls` is a callable that
    counts the module calls seen so far (the tracer sets it). `p.phases` keeps the seconds each phase
    took, shown or not."""

    def __init__(self, model: str, modules: int, *, stream=None, delay: float = DELAY, enabled: Optional[bool] = None):
        self.model = model
        self.modules = modules
        self.stream = stream or sys.stderr
        self.delay = delay
        self.enabled = interactive(self.stream) if enabled is None else enabled
        self.calls: Callable[[], int] = lambda: 0
        self._started = 0.0
        self.phases: dict[str, float] = {}    # seconds per phase, in the order they ran (benchmarks/overhead.py)
        self._phase, self._phase_started = "starting", time.perf_counter()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown = 0      # width of the line on screen, to clear it

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[self._phase] = self.phases.get(self._phase, 0.0) + now - self._phase_started
        self._phase, self._phase_started = name, now

    def __enter__(self) -> "Progress":
        self._started = self._phase_started = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="nnlint-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.phase = "done"     # closes the last phase's time
        self.phases.pop("done", None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")

    def line(self) -> str:
        elapsed = time.perf_counter() - self._started
        return (f"nnlint: {self.model} ({self.modules} modules): {self.phase}, {self.calls()} module calls, "
                f"{elapsed:.1f} s")

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            text = self.line()
            self._write("\r" + text.ljust(self._shown))
            self._shown = max(self._shown, len(text))
            self._stop.wait(INTERVAL)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):   # a closed or broken stream: progress is not worth an error
            self._stop.set()
