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
class LossInput:
    """What a loss call was fed as its input (the model's output, as the loss saw it). The row
    statistics are over the class dimension (dim 1, or dim 0 of a 1-D input) of the class losses."""

    shape: tuple[int, ...]
    dtype: str
    min: float
    max: float
    mean: float
    std: float
    nonfinite: bool = False
    row_sum: Optional[tuple[float, float]] = None     # (min, max) over rows of the sum over classes
    row_logsumexp: Optional[float] = None             # mean over rows of logsumexp over classes
    calibration: Optional[float] = None               # mean |p - 1/C| of softmax(input) (sigmoid: |p - 1/2|)
    prior_calibration: Optional[float] = None         # mean |p - f|, f the batch's label frequencies


@dataclass
class LossTarget:
    """What a loss call was given as its target."""

    shape: tuple[int, ...]
    dtype: str
    is_float: bool
    min: float
    max: float
    mean: float
    std: float
    ignored: int = 0                                  # integer targets equal to ignore_index
    out_of_range: int = 0                             # integer targets outside [0, classes), not ignored
    first_out_of_range: Optional[int] = None
    class_counts: list[int] = field(default_factory=list)   # integer class targets: how many of each class
    one_hot: bool = False                             # rows of 0/1 with exactly one 1
    row_sum: Optional[tuple[float, float]] = None     # float targets of the input's shape: (min, max) row sums
    integral: bool = False                            # every value is a whole number


@dataclass
class LossCall:
    """One call of a torch loss function seen while the loss was computed (in `loss_fn`, in the model's
    forward for `outputs.loss`, or in a training step), measured before it ran."""

    loss: str                         # "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", ...
    family: str                       # "class" (softmax over dim 1), "binary" (per element), "regression"
    expects: str                      # what its input must be: "logits", "log_probabilities", "probabilities", "values"
    input: LossInput
    target: Optional[LossTarget]
    num_classes: Optional[int] = None
    options: dict[str, Any] = field(default_factory=dict)   # reduction, ignore_index, label_smoothing
    serial: Optional[int] = None      # the model tensor its input came from (lineage); None: not the model's
    steps: list[str] = field(default_factory=list)   # ops between the model's output and the call ("log_softmax")
    location: Optional[Location] = None              # the user's line that called it
    value: Optional[float] = None     # the loss per target element
    prior_entropy: Optional[float] = None            # entropy of the batch's label frequencies
    raised: Optional[str] = None      # the error the call raised, or (predicted) the reason it would
    predicted: bool = False           # raised is a prediction: the call was not made


@dataclass
class LossValue:
    """What the loss the training step would call `.backward()` on is."""

    type: str                         # "Tensor", or the Python type returned ("float")
    shape: tuple[int, ...] = ()
    requires_grad: bool = False
    grad_fn: Optional[str] = None     # "NllLossBackward0"; None for a leaf or a constant
    floating: bool = True


@dataclass
class LossFailure:
    """The loss function or the backward raised (or a loss call would have: see LossCall.predicted)."""

    stage: str                        # "the loss function", "the backward pass", "Net.forward"
    error: str                        # "IndexError: Target 11 is out of bounds."
    message: str                      # the could-not-run message, with the user's traceback


@dataclass
class Objective:
    """The real loss of the check and what it was computed from: present only with a real loss
    (`loss_fn`, a model output's `.loss`, a step's scalar), never for the surrogate."""

    source: str                       # "loss_fn" | "outputs.loss" | "step"
    name: str                         # "CrossEntropyLoss", "loss_through_item", "Classifier.training_step"
    calls: list[LossCall] = field(default_factory=list)
    value: Optional[LossValue] = None
    failure: Optional[LossFailure] = None
    backward: str = "none"            # what drove the backward: "loss", "loss.mean()", "surrogate", "none"
    location: Optional[Location] = None   # where the loss function is defined, when the loader saw it


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
    target_info: dict[str, Any] = field(default_factory=dict)   # where the batch and optimizer were built
    objective: Optional[Objective] = None                        # the real loss and what it saw
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
    updated_buffers: list[str] = field(default_factory=list)    # buffers the pass wrote to (running statistics)

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
