"""Build a Trace by hand, without torch: a rule unit-tested on exactly the numbers it reads.

    b = TraceBuilder()
    x = b.input((64, 32))
    h = b.linear("fc1", x, 32, 64, weight_std=0.25, out_std=1.4)
    a = b.activation("act1", "relu", h, unit_active=[0.0] * 40 + [0.5] * 24)
    b.output(b.linear("fc2", a, 64, 10, weight_std=0.1, out_std=1.0))
    found = list(DeadRelu().check(b.build()))

Every value a rule reads is an argument (statistics, parameter stds, gradients, modes); everything
else gets the value of a healthy model. The records are the tracer's own (nnlint.trace.records).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from nnlint.initmath import fans
from nnlint.trace.records import (InputRecord, ModuleRecord, OpRecord, OptimizerRecord, ParamRecord, TensorSummary,
                                  Trace)


class TraceBuilder:
    def __init__(self, model_type: str = "Net", training: bool = True):
        self.trace = Trace(model_type=model_type, modules={}, params={}, ops=[], inputs=[], output_serials=[],
                           root_training=training, backward_ran=True)
        self.trace.modules[""] = ModuleRecord("", model_type, f"model.{model_type}", False, training, None)
        self._serial = 0

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    # -- the pieces --
    def input(self, shape: Sequence[int], *, mean: float = 0.0, std: float = 1.0, path: str = "batch",
              channel_mean: Optional[list[float]] = None, channel_std: Optional[list[float]] = None) -> int:
        serial = self._next()
        rec = InputRecord(path, serial, TensorSummary(tuple(shape), "float32", mean, std), True,
                          channel_dim=1 if len(shape) >= 2 else None,
                          channel_mean=list(channel_mean or []), channel_std=list(channel_std or []))
        self.trace.inputs.append(rec)
        self.trace.input_serials.append(serial)
        return serial

    def module(self, name: str, type_name: str, *, training: Optional[bool] = None, leaf: bool = True,
               **attrs: Any) -> ModuleRecord:
        rec = self.trace.modules.get(name)
        if rec is None:
            rec = self.trace.modules[name] = ModuleRecord(
                name, type_name, f"torch.nn.{type_name}", leaf, self.trace.root_training if training is None else training,
                None, attrs=dict(attrs), is_torch_builtin=True)
        return rec

    def param(self, name: str, shape: Sequence[int], *, std: float, mean: float = 0.0, requires_grad: bool = True,
              grad_norm: Optional[float] = 1e-2) -> int:
        """A parameter (its module must exist); returns its serial. grad_norm None: no gradient reached it."""
        module, _, attr = name.rpartition(".")
        fan_in, fan_out = fans(tuple(shape))
        norm = ((std ** 2 + mean ** 2) * math.prod(shape)) ** 0.5
        self.trace.params[name] = ParamRecord(
            name, module, attr, tuple(shape), requires_grad, mean, std, norm == 0.0, False, fan_in, fan_out, norm,
            grad_norm=grad_norm, grad_all_zero=grad_norm == 0.0)
        self.trace.modules[module].params.append(name)
        serial = self._next()
        self.trace.param_serials[serial] = name
        return serial

    def op(self, kind: str, inputs: Sequence[int], *, module: str = "", out_shape: Sequence[int] = (),
           out_std: float = 1.0, out_mean: float = 0.0, weight: Optional[str] = None, func: Optional[str] = None,
           args: Optional[dict] = None, stats: Optional[dict] = None) -> int:
        """One op; returns the serial of its output."""
        out = self._next()
        rec = self.trace.modules.get(module)
        op = OpRecord(index=len(self.trace.ops), phase="train", kind=kind, func=func or kind, module=module,
                      module_type=rec.type if rec is not None else self.trace.model_type, call_index=0,
                      inputs=list(inputs), outputs=[out], args=dict(args or {}), weight=weight)
        op.stats["out"] = TensorSummary(tuple(out_shape), "float32", out_mean, out_std)
        op.stats.update(stats or {})
        self.trace.ops.append(op)
        return out

    # -- shorthands --
    def linear(self, name: str, x: int, in_features: int, out_features: int, *, weight_std: float,
               out_std: float = 1.0, batch: int = 64, in_std: float = 1.0) -> int:
        self.module(name, "Linear", in_features=in_features, out_features=out_features)
        w = self.param(f"{name}.weight", (out_features, in_features), std=weight_std)
        b = self.param(f"{name}.bias", (out_features,), std=0.0)
        return self.op("linear", [x, w, b], module=name, out_shape=(batch, out_features), out_std=out_std,
                       weight=f"{name}.weight", stats={"in": TensorSummary((batch, in_features), "float32", 0.0, in_std)})

    def activation(self, name: str, kind: str, x: int, *, units: int = 0, batch: int = 64,
                   unit_active: Optional[list[float]] = None, saturated: Optional[float] = None,
                   out_std: float = 1.0) -> int:
        """A torch.nn activation module: `unit_active` per unit for the ReLU family, the `saturated`
        fraction for sigmoid/tanh."""
        self.module(name, {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}.get(kind, kind))
        units = units or (len(unit_active) if unit_active else 1)
        stats: dict[str, Any] = {}
        if unit_active is not None:
            stats["unit_active"] = list(unit_active)
        if saturated is not None:
            stats["saturated"] = saturated
            stats["in"] = TensorSummary((batch, units), "float32", 0.0, 3.0)
        return self.op(kind, [x], module=name, out_shape=(batch, units), out_std=out_std,
                       args={"unit_dim": 1} if unit_active is not None else {}, stats=stats)

    def output(self, serial: int) -> None:
        self.trace.output_serials.append(serial)

    def optimizer(self, type_name: str, groups: list[dict]) -> None:
        """Parameter groups as OptimizerRecord keeps them: {"params": [names], "weight_decay": ..., "lr": ...}."""
        full = [{"weight_decay": 0.0, "lr": 1e-3, "supports_weight_decay": True, "decoupled_weight_decay": False, **g}
                for g in groups]
        self.trace.optimizer = OptimizerRecord(type_name, full)

    def build(self) -> Trace:
        self.trace.eval_ran = True
        return self.trace
