"""One runner per tool: nnlint and the three peers, each called the way its own README calls it,
on a fresh build of a gallery case. A runner returns an Outcome: what the tool flagged, in its own
names (nnlint codes, torchtest2 check names, torch-audit rule ids, neural_net_checklist asserts).

Runners never decide whether a case was found; peers.py scores the outcomes.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")   # neural_net_checklist draws progress bars

import torch  # noqa: E402

from benchmarks.gallery import Case, default_optimizer, run_loop  # noqa: E402

TRAINING_STEPS = 2          # the loop every loop-aware tool watches (torch-audit, nnlint.guard)
PROBE_STEPS = 50            # nnlint's opt-in training probe, once check() takes steps= (issue 14)
PROBE_CODES = ("NN805", "NN806")
NNC_OVERFIT = {"threshold": 0.1, "max_steps": 2000}   # see nnc_battery for why not the defaults


@dataclass
class Outcome:
    """status: "ran" | "crash" (the tool or the setup raised) | "n/a" (the tool cannot take this
    setup). flags: what the tool raised at its alarm level (nnlint: warning or error; torchtest2:
    FAIL or WARN; torch-audit: WARN or ERROR, performance hints apart; neural_net_checklist: a
    failed assert). findings: everything it said, for the JSON and PEERS.md."""

    status: str
    flags: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0


def not_applicable(why: str) -> Outcome:
    return Outcome("n/a", detail=why)


def crashed(exc: BaseException) -> Outcome:
    return Outcome("crash", detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


def accepted_kwargs(fn: Callable, wanted: dict) -> tuple[dict, list[str]]:
    """The declarations `fn` can take, and the names of those it cannot (reported, not hidden)."""
    params = inspect.signature(fn).parameters
    return ({k: v for k, v in wanted.items() if k in params}, [k for k in wanted if k not in params])


# ---------------------------------------------------------------------------------------------
# nnlint: check() on one batch, or guard() over a real 2-step loop


def nnlint_declarations(case: Case) -> dict:
    wanted = {k: case.options[k] for k in ("frozen", "causal") if k in case.options}
    wanted["steps"] = PROBE_STEPS
    return wanted


def run_nnlint(case: Case) -> Outcome:
    import nnlint
    from nnlint.errors import NNLintError

    setup = case.build()
    if case.loop:
        return run_nnlint_guard(setup)
    kwargs, refused = accepted_kwargs(nnlint.check, nnlint_declarations(case))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = nnlint.check(setup.model, setup.batch, target=setup.target, loss_fn=setup.loss_fn,
                                  optimizer=setup.optimizer, **kwargs)
    except NNLintError as exc:
        return Outcome("crash", detail=f"could not run: {str(exc).splitlines()[0][:200]}")
    except Exception as exc:   # an nnlint bug is a result too
        return crashed(exc)
    # steps= is the benchmark's own request, worth naming only where the probe is the way to see the bug
    refused = [k for k in refused if k != "steps" or (case.expect is not None and case.expect.code in PROBE_CODES)]
    return nnlint_outcome(report.diagnostics, refused)


def run_nnlint_guard(setup) -> Outcome:
    import nnlint

    optimizer = setup.optimizer or default_optimizer(setup.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guard = nnlint.guard(setup.model, optimizer, on_error="warn")
        try:
            run_loop(setup, optimizer, TRAINING_STEPS)
        except Exception as exc:
            return crashed(exc)
        finally:
            guard.remove()
    return nnlint_outcome([] if guard.report is None else guard.report.diagnostics, [])


def nnlint_outcome(diagnostics, refused: list[str]) -> Outcome:
    findings = [{"code": d.code, "severity": d.severity, "module": d.module, "message": d.message[:240]}
                for d in diagnostics]
    flags = sorted({d.code for d in diagnostics if d.severity in ("error", "warning")})
    detail = f"nnlint.check takes no {', '.join(refused)}=" if refused else ""
    return Outcome("ran", flags, findings, detail)


# ---------------------------------------------------------------------------------------------
# torchtest2: check_model(model, inputs, targets, loss_fn=, optimizer=, frozen=)


def run_torchtest2(case: Case) -> Outcome:
    if case.loop:
        return not_applicable("one-batch checks: it never sees the training loop")
    import torchtest2

    setup = case.build()
    kwargs = {"loss_fn": setup.loss_fn, "optimizer": setup.optimizer, "seed": 0}
    if "frozen" in case.options:
        kwargs["frozen"] = case.options["frozen"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = torchtest2.check_model(setup.model, setup.batch, setup.target, **kwargs)
    except Exception as exc:
        return crashed(exc)
    alarm = (torchtest2.Status.FAIL, torchtest2.Status.WARN)
    findings = [{"check": r.name, "status": r.status.value, "message": r.message[:240]}
                for r in report if r.status in alarm]
    return Outcome("ran", sorted({f["check"] for f in findings}), findings)


# ---------------------------------------------------------------------------------------------
# torch-audit: autopatch(model, optimizer=...) around a real training loop (its README quick start)


def run_torch_audit(case: Case) -> Outcome:
    from torch_audit import Severity, autopatch

    setup = case.build()
    optimizer = setup.optimizer or default_optimizer(setup.model)
    auditor = autopatch(setup.model, optimizer=optimizer, every_n_steps=1, reporters=[], run_static=True,
                        run_init=True)
    raised = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_loop(setup, optimizer, TRAINING_STEPS)
    except Exception as exc:
        raised = exc
    finally:
        result = auditor.finish()
        auditor.unpatch()
    findings = [{"rule": f.rule_id, "severity": f.severity.value, "module": f.module_path,
                 "message": f.message[:240]} for f in result.findings]
    flags = sorted({f.rule_id for f in result.findings if f.severity >= Severity.WARN and not is_hint(f.rule_id)})
    internal = [f for f in findings if f["rule"] == "TA000"]
    if raised is not None:
        out = crashed(raised)
        out.flags, out.findings = flags, findings
        return out
    return Outcome("ran", flags, findings, f"{len(internal)} validator crash(es) (TA000)" if internal else "")


def is_hint(rule_id: str) -> bool:
    """TA2xx are hardware/performance hints (tensor-core alignment, channels-last, AMP, device
    placement) that fire on most models; TA000 is a validator's own crash. Neither says the
    training setup is wrong, so neither counts as a find or a false alarm (both are reported)."""
    return rule_id.startswith("TA2") or rule_id == "TA000"


# ---------------------------------------------------------------------------------------------
# neural_net_checklist: the asserts of assert_all_for_classification_cross_entropy_loss (or of
# assert_all_for_causal_llm_cross_entropy_loss), each run on its own so one failure does not hide
# the rest (the all-in-one functions stop at the first).


@dataclass(frozen=True)
class NncCheck:
    name: str
    run: Callable   # (td, factory, provider, setup, options) -> None; raises AssertionError on a find
    needs: str = ""  # "classes" | "causal" | "loss"


def nnc_battery() -> list[NncCheck]:
    """The README's order. The overfit assert keeps its API but not its defaults (loss < 1e-4
    within 65,536 steps): 60+ cases on 2 shared cores cannot afford it, so loss < 0.1 (the value
    the README's causal-LM recipe uses) within 2,000 steps."""
    return [
        NncCheck("loss_at_init", lambda td, f, p, s, o: td.assert_balanced_classification_cross_entropy_loss_at_init(
            f(), p, num_classes=o["num_classes"], loss_fn=s.loss_fn), "classes"),
        NncCheck("calibration_at_init", lambda td, f, p, s, o: td.assert_balanced_classification_cross_entropy_init_calibrated(
            f(), p, num_classes=o["num_classes"]), "classes"),
        NncCheck("forward_batch_independence", lambda td, f, p, s, o: td.assert_forward_batch_independence(f, p)),
        NncCheck("forward_causal", lambda td, f, p, s, o: td.assert_forward_causal_property(f, p), "causal"),
        NncCheck("non_zero_gradients", lambda td, f, p, s, o: td.assert_non_zero_gradients(f(), p)),
        NncCheck("backward_batch_independence", lambda td, f, p, s, o: td.assert_backward_batch_independence(f, p)),
        NncCheck("backward_causal", lambda td, f, p, s, o: td.assert_backward_causal_property(f, p), "causal"),
        NncCheck("input_independent_baseline", lambda td, f, p, s, o: td.assert_input_independent_baseline_worse(
            f, p, loss_fn=s.loss_fn), "loss"),
        NncCheck("overfit_batch", lambda td, f, p, s, o: td.assert_overfit_to_batch(
            f(), p, loss_fn=s.loss_fn, **NNC_OVERFIT), "loss"),
    ]


def nnc_applies(check: NncCheck, setup, options: dict) -> bool:
    if check.needs == "classes":
        return "num_classes" in options and setup.loss_fn is not None
    if check.needs == "causal":
        return bool(options.get("causal"))
    if check.needs == "loss":
        return setup.loss_fn is not None and setup.target is not None
    return True


def nnc_inputs(case: Case, setup):
    """The (inputs, targets) pair and the model factory, as the README's recipe prepares them: a
    causal LM's token ids become one-hot rows and its embedding a matmul (so gradients reach the
    input); a setup without targets gets placeholder class 0 (the checks that use them are skipped)."""
    import neural_net_checklist.torch_diagnostics as td

    factory = lambda: case.build().model   # noqa: E731 - the library takes a factory
    inputs, target = setup.batch, setup.target
    if target is None:
        target = torch.zeros(inputs.shape[0], dtype=torch.long)
    if case.options.get("embedding"):
        inputs = torch.nn.functional.one_hot(inputs, num_classes=case.options["num_classes"]).float()
        factory = td.replace_input_embedding_layer(factory, case.options["embedding"])
    return (inputs, target), factory


def run_nnc(case: Case) -> Outcome:
    if case.loop:
        return not_applicable("one-batch checks: it never sees the training loop")
    import neural_net_checklist.torch_diagnostics as td

    setup = case.build()
    if not isinstance(setup.batch, torch.Tensor):
        return not_applicable("takes one input tensor (model(inputs)); this model takes several")
    provider, factory = nnc_inputs(case, setup)
    findings, crashes = [], []
    for check in nnc_battery():
        if not nnc_applies(check, setup, case.options):
            continue
        status, message = run_one_nnc(check, td, factory, provider, setup, case.options)
        findings.append({"check": check.name, "status": status, "message": message[:240]})
        if status == "crash":
            crashes.append(check.name)
    flags = sorted(f["check"] for f in findings if f["status"] == "fail")
    ran = [f for f in findings if f["status"] != "crash"]
    detail = f"crashed in {', '.join(crashes)}" if crashes else ""
    return Outcome("ran" if ran else "crash", flags, findings, detail)


def run_one_nnc(check: NncCheck, td, factory, provider, setup, options) -> tuple[str, str]:
    # its asserts print their progress (and tqdm bars) as they go
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        try:
            check.run(td, factory, provider, setup, options)
        except AssertionError as exc:
            if raised_in(exc, "get_supervised_batch"):   # its own precondition (e.g. batch < num_classes)
                return "crash", f"cannot take this batch: {exc}"
            return "fail", str(exc).splitlines()[0] if str(exc) else "assertion failed"
        except Exception as exc:
            return "crash", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "pass", ""


def raised_in(exc: BaseException, function: str) -> bool:
    """Whether `function` is the frame that raised `exc` (its innermost frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == function


TOOLS: dict[str, Callable[[Case], Outcome]] = {
    "nnlint": run_nnlint,
    "torchtest2": run_torchtest2,
    "torch-audit": run_torch_audit,
    "neural_net_checklist": run_nnc,
}
