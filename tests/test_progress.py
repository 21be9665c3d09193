"""A check that takes a while says how far it is: the pass, the module calls seen, the time; nothing for a
short check, nothing where nobody watches, and the line is gone when the check ends."""
from __future__ import annotations

import io
import time

import torch
from torch import nn

import nnlint
from nnlint.progress import Progress


class SlowNet(nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)      # a model whose forward takes a while
        return self.fc(x)


def test_a_slow_check_shows_its_pass_and_then_clears_the_line():
    stream = io.StringIO()
    with Progress("SlowNet", 2, stream=stream, delay=0.05, enabled=True) as p:
        p.phase = "train forward"
        p.calls = lambda: 3
        time.sleep(0.2)
    text = stream.getvalue()
    assert "nnlint: SlowNet (2 modules): train forward, 3 module calls" in text
    assert text.endswith("\r") and text.rsplit("\r", 2)[-2].strip() == ""    # cleared: spaces over the line


def test_a_short_check_and_a_quiet_one_show_nothing():
    stream = io.StringIO()
    with Progress("Net", 1, stream=stream, delay=5.0, enabled=True):
        pass
    with Progress("Net", 1, stream=stream, delay=0.0, enabled=False):
        time.sleep(0.05)
    assert stream.getvalue() == ""


def test_check_reports_its_progress_on_stderr(capfd):
    nnlint.check(SlowNet(2.5), torch.randn(4, 8), progress=True)
    err = capfd.readouterr().err
    assert "nnlint: SlowNet (2 modules): train forward" in err


def test_check_is_silent_under_pytest_by_default(capfd):
    nnlint.check(SlowNet(2.2), torch.randn(4, 8))
    assert "nnlint:" not in capfd.readouterr().err
