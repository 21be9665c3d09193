"""The Trace: what one instrumented run of the model measured, as plain data.

Rules read only this. Nothing here holds a tensor or a module: every number is a Python float, so a
rule can be tested on a hand-made Trace without running anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from nnlint.diagnostics import Location


@dataclass
class TensorSummary:
    """Scalar statistics of one tensor, taken while the pass ran."""

    shape: tuple[int, ...]
    dtype: str
    mean: float
    std: float
    nonfinite: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def var(self) -> float:
        return self.std * self.std


@dataclass
class ParamRecord:
    name: str                     # "layer1.0.conv1.weight"
    module: str                   # "layer1.0.conv1"
    attr: str                     # "weight"
    shape: tuple[int, ...]
    requires_grad: bool
    mean: float
    std: float
    all_zero: bool
    rows_identical: bool          # every output unit (row of dim 0) has the same weights
    fan_in: int
    fan_out: int
    norm: float
    grad_norm: Optional[float] = None   # None: no gradient reached it (or no backward ran)
    grad_all_zero: bool = False
    grad_nonfinite: bool = False
    tied_to: Optional[str] = None       # the first name of a parameter shared by several modules

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class ModuleRecord:
    name: str                     # qualified name, "" for the root
    type: str                     # class name, "Conv2d"
    type_path: str                # "torch.nn.modules.conv.Conv2d"
    is_leaf: bool
    training: bool                # the flag as nnlint found it
    location: Optional[Location]  # where the module was constructed, when known
    params: list[str] = field(default_factory=list)   # direct parameters' qualified names
    attrs: dict[str, Any] = field(default_factory=dict)  # p, negative_slope, track_running_stats ...
    is_torch_builtin: bool = False
    scripted: bool = False


@dataclass
class OpRecord:
    """One recorded torch call (functional, method or module-internal), with lineage and statistics."""

    index: int
    phase: str                    # "train" or "eval"
    kind: str                     # normalized: "linear", "conv", "relu", "sigmoid", "add", "mul", ...
    func: str                     # the torch function's name as called
    module: str                   # innermost module running when it was called ("" = root / outside)
    module_type: str
    call_index: int               # how many times that module had been entered before this call
    inputs: list[int]             # tensor serials (lineage)
    outputs: list[int]
    location: Optional[Location] = None
    args: dict[str, Any] = field(default_factory=dict)   # scalar arguments of interest (p, training ...)
    stats: dict[str, Any] = field(default_factory=dict)  # "out", "in", "operands", "unit_active" ...
    weight: Optional[str] = None  # qualified name of the parameter used as weight (linear/conv)
    module_stack: tuple[str, ...] = ()

    @property
    def out(self) -> Optional[TensorSummary]:
        return self.stats.get("out")

    @property
    def site(self) -> str:
        """A name for the call site: the module, with the call number when a module runs several times."""
        return self.module if self.call_index == 0 else f"{self.module} (call {self.call_index + 1})"


@dataclass
class ModuleCall:
    """One call of a module: what went in and out (lineage), and which ops ran inside it."""

    module: str
    module_type: str
    phase: str
    call_index: int
    inputs: list[int]
    outputs: list[int]
    first_op: int                 # index into Trace.ops of the first op inside the call
    end_op: int                   # one past the last op inside the call
    output_summary: Optional[TensorSummary] = None

    @property
    def site(self) -> str:
        return self.module if self.call_index == 0 else f"{self.module} (call {self.call_index + 1})"


@dataclass
class InputRecord:
    path: str                     # "batch", "batch[0]", "batch['pixel_values']"
    serial: int
    summary: TensorSummary
    is_float: bool
    channel_dim: Optional[int] = None
    channel_mean: list[float] = field(default_factory=list)
    channel_std: list[float] = field(default_factory=list)
    mean_abs_correlation: Optional[float] = None   # for 2-D feature inputs


@dataclass
class OpaqueRegion:
    """A module with weights that ran while the tracer saw nothing inside it: TorchScript, a compiled
    region, a C++ extension."""

    module: str
    type: str


@dataclass
class OptimizerRecord:
    """The optimizer as given. Each group: "lr", "weight_decay", "momentum", "betas", "eps" (None where
    the optimizer has no such hyperparameter), "params" (names of the model's parameters it holds),
    "foreign" (shapes of the tensors it holds that are no parameter of the model), "dtypes"."""

    type: str                      # "SGD", "Adam", "AdamW"
    groups: list[dict[str, Any]]

    def groups_of(self) -> dict[str, list[int]]:
        """Each parameter name the optimizer holds -> the indexes of the groups that hold it."""
        found: dict[str, list[int]] = {}
        for i, g in enumerate(self.groups):
            for name in g.get("params", ()):
                found.setdefault(name, []).append(i)
        return found


@dataclass
class Trace:
    model_type: str
    modules: dict[str, ModuleRecord]
    params: dict[str, ParamRecord]
    ops: list[OpRecord]
    inputs: list[InputRecord]
    output_serials: list[int]
    calls: list[ModuleCall] = field(default_factory=list)
    eval_output_serials: list[int] = field(default_factory=list)
    root_training: bool = True
    backward_ran: bool = False
    loss: Optional[float] = None
    loss_is_surrogate: bool = True
    target_info: dict[str, Any] = field(default_factory=dict)   # num_classes, loss type ...
    eval_rng_consumed: bool = False
    eval_ran: bool = False
    optimizer: Optional[OptimizerRecord] = None
    train_transform: Optional[dict[str, Any]] = None   # {"type": ..., "steps": [class names], "location"}
    incomplete: list[OpaqueRegion] = field(default_factory=list)    # regions the tracer could not see
    batch_description: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    param_serials: dict[int, str] = field(default_factory=dict)
    input_serials: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)        # probe name -> what it measured (nnlint.probes)

    # ----- convenience views (derived, never stored twice) -----
    def ops_in(self, phase: str = "train") -> list[OpRecord]:
        return [o for o in self.ops if o.phase == phase]

    @property
    def module_order(self) -> dict[str, int]:
        """Execution order of modules in the training pass (first call), for sorting reports."""
        order: dict[str, int] = {}
        for op in self.ops:
            if op.phase == "train":
                for name in op.module_stack + (op.module,):
                    order.setdefault(name, len(order))
        for name in self.modules:
            order.setdefault(name, len(order))
        return order

    def module_of_param(self, param: str) -> Optional[ModuleRecord]:
        rec = self.params.get(param)
        return None if rec is None else self.modules.get(rec.module)

    def location_of(self, module: str) -> Optional[Location]:
        rec = self.modules.get(module)
        return None if rec is None else rec.location
