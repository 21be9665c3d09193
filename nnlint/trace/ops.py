"""Naming the torch calls the tracer sees: a normalized kind per function, and which ones get statistics."""
from __future__ import annotations

RELU_FAMILY = {"relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "prelu", "rrelu", "softplus"}
SATURATING = {"sigmoid", "tanh"}
ACTIVATIONS = RELU_FAMILY | SATURATING | {"hardsigmoid", "hardtanh", "softmax", "log_softmax", "softsign", "logsigmoid"}
WEIGHT_OPS = {"linear", "conv", "matmul", "embedding", "bilinear"}
# The ops that hold a forward's FLOPs. In the eval-mode pass, which only asks whether anything still
# consumes the RNG, they return zeros of their output's shape instead of computing (Recorder.skeleton).
COMPUTE_OPS = {"linear", "conv", "matmul", "bilinear", "attention"}
NORM_OPS = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"}
RANDOM_OPS = {"dropout", "random"}

# Where a ReLU-like activation passes (almost) no gradient: below this pre-activation its derivative is
# under 5% of its peak, everywhere to the left (measured with autograd on a fine grid). ReLU's is
# exactly 0; GELU's derivative is negative but sizeable between -2.28 and -0.75, so its units there still
# learn. Leaky ReLU, PReLU and RReLU keep their slope everywhere: their units cannot die, and are not
# listed.
ALIVE_ABOVE = {"relu": 0.0, "relu6": 0.0, "hardswish": -3.0, "gelu": -2.28, "silu": -3.93, "mish": -3.98,
               "elu": -3.0, "celu": -3.0, "selu": -3.0, "softplus": -2.94}

# The torch.nn module of an activation a fix may swap in or out.
ACTIVATION_MODULES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU",
                      "silu": "SiLU", "elu": "ELU", "softplus": "Softplus", "selu": "SELU", "mish": "Mish"}

# Where sigmoid and tanh are flat: |z| beyond which the derivative is under 5% of its peak
# (tanh'(2.2) = 0.048; sigmoid'(4.4) / sigmoid'(0) = 0.047).
FLAT_REGION = {"tanh": 2.2, "sigmoid": 4.4}
# Inside an activation formula `x * f(x)` (a written-out GELU-tanh, HF's NewGELUActivation; Swish), the
# tanh/sigmoid is a gate: below its flat region's negative edge the gate is shut, the unit outputs about
# 0 and passes about no gradient, as a dead ReLU's does (GELU-tanh: the tanh's input is -2.24 where x is
# ALIVE_ABOVE's -2.28). Above the positive edge the unit passes x: no harm.
GATE_OPEN_ABOVE = {kind: -edge for kind, edge in FLAT_REGION.items()}
# Per activation kind, the pre-activation above which a unit passes signal and gradient: what the
# tracer's `unit_active` counts.
OPEN_ABOVE = {**ALIVE_ABOVE, **GATE_OPEN_ABOVE}

_KIND_BY_NAME = {
    "linear": "linear", "bilinear": "bilinear",
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv",
    "conv_transpose1d": "conv", "conv_transpose2d": "conv", "conv_transpose3d": "conv", "_convolution": "conv",
    "matmul": "matmul", "mm": "matmul", "bmm": "matmul", "addmm": "matmul", "einsum": "matmul", "__matmul__": "matmul",
    "embedding": "embedding",
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu",
    "elu": "elu", "elu_": "elu", "selu": "selu", "selu_": "selu", "celu": "celu", "gelu": "gelu", "silu": "silu",
    "mish": "mish", "hardswish": "hardswish", "prelu": "prelu", "rrelu": "rrelu", "softplus": "softplus",
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh",
    "hardsigmoid": "hardsigmoid", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
    "softmax": "softmax", "log_softmax": "log_softmax", "softsign": "softsign", "logsigmoid": "logsigmoid",
    "add": "add", "add_": "add", "__add__": "add", "__radd__": "add", "__iadd__": "add",
    "sub": "sub", "sub_": "sub", "__sub__": "sub", "__rsub__": "sub", "__isub__": "sub",
    "mul": "mul", "mul_": "mul", "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul", "addcmul": "mul",
    "div": "div", "div_": "div", "__truediv__": "div", "__rtruediv__": "div", "__itruediv__": "div",
    "exp": "exp", "exp_": "exp", "log": "log", "pow": "pow", "__pow__": "pow", "sqrt": "sqrt", "rsqrt": "rsqrt",
    "cat": "cat", "concat": "cat", "concatenate": "cat", "stack": "cat",
    "batch_norm": "batch_norm", "layer_norm": "layer_norm", "group_norm": "group_norm",
    "instance_norm": "instance_norm", "rms_norm": "rms_norm",
    "dropout": "dropout", "dropout1d": "dropout", "dropout2d": "dropout", "dropout3d": "dropout",
    "alpha_dropout": "dropout", "feature_alpha_dropout": "dropout", "dropout_": "dropout",
    "bernoulli": "random", "bernoulli_": "random", "rand": "random", "rand_like": "random", "randn": "random",
    "randn_like": "random", "randint": "random", "randint_like": "random", "normal": "random", "normal_": "random",
    "uniform_": "random", "multinomial": "random", "randperm": "random", "exponential_": "random",
    "lstm": "rnn", "gru": "rnn", "rnn_tanh": "rnn", "rnn_relu": "rnn",
    "multi_head_attention_forward": "attention", "scaled_dot_product_attention": "attention",
    "max_pool1d": "pool", "max_pool2d": "pool", "max_pool3d": "pool", "avg_pool1d": "pool", "avg_pool2d": "pool",
    "avg_pool3d": "pool", "adaptive_avg_pool1d": "pool", "adaptive_avg_pool2d": "pool", "adaptive_avg_pool3d": "pool",
    "adaptive_max_pool2d": "pool", "max_pool2d_with_indices": "pool", "mean": "mean",
}

# Ops whose output is a view or a copy of their input's values: no statistics worth taking, but lineage
# flows through them.
PASSTHROUGH = {
    "view", "reshape", "flatten", "permute", "transpose", "t", "unsqueeze", "squeeze", "contiguous", "expand",
    "expand_as", "__getitem__", "split", "chunk", "detach", "clone", "to", "type", "float", "half", "bfloat16",
    "unflatten", "narrow", "select", "view_as", "reshape_as", "movedim", "unbind", "repeat", "tile", "flip",
    "masked_fill", "pad", "roll", "cpu", "cuda", "double", "long", "int", "bool",
}

# Ops whose outputs (all, or all after the first) are positions or counts, not values: what is computed
# from them selects or routes (an MoE's expert indices, sorted by expert and counted into offsets), it
# does not carry the input's values on. Value and index: topk, sort, max/min over a dim, ...
INDEX_AFTER_FIRST = {"topk", "sort", "kthvalue", "mode", "max", "min", "median", "cummax", "cummin", "unique"}
INDEX_ONLY = {"argmax", "argmin", "argsort", "nonzero", "argwhere", "searchsorted", "bucketize", "histc", "bincount",
              "one_hot", "eq", "ne", "gt", "ge", "lt", "le", "__eq__", "__gt__", "__ge__", "__lt__", "__le__",
              "isin", "isnan", "isinf", "isfinite", "logical_not", "logical_and", "logical_or"}

# Factories whose output holds whatever the allocator handed out (torch.empty): nothing reads those
# values before an in-place op overwrites them, so their statistics mean nothing (and may be NaN).
UNINITIALIZED = {"empty", "empty_like", "new_empty", "empty_strided"}

# Never record these: metadata getters and shape queries (they return no tensor).
IGNORED = {"__get__", "dim", "size", "numel", "is_floating_point", "__len__", "is_contiguous", "stride",
           "__bool__", "item", "tolist", "__format__", "__repr__", "__hash__", "__eq__", "__ne__",
           "requires_grad_", "data_ptr", "storage_offset", "element_size", "__setstate__", "__reduce_ex__",
           "get_device", "is_complex", "__iter__", "__index__", "__int__", "__float__", "has_names", "__set__",
           "untyped_storage", "_is_view", "is_nonzero", "__contains__", "__array__", "__deepcopy__"}


def kind_of(name: str) -> str:
    return _KIND_BY_NAME.get(name, name)


def func_name(func) -> str:
    name = getattr(func, "__name__", None)
    if name is None:
        name = getattr(getattr(func, "__func__", None), "__name__", None) or type(func).__name__
    return name


def scalar_args(kind: str, args: tuple, kwargs: dict) -> dict:
    """The scalar arguments of a call that rules read: a dropout's p and training flag, a LeakyReLU's
    slope, an RReLU's range, a batch_norm's training flag, an attention's is_causal, a softmax's dim, a
    power's exponent."""
    if kind == "dropout":
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        training = kwargs.get("training", args[2] if len(args) > 2 else True)
        return {"p": float(p), "training": bool(training)}
    if kind == "leaky_relu":
        return {"negative_slope": float(kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01))}
    if kind == "rrelu":
        return {"lower": float(kwargs.get("lower", args[1] if len(args) > 1 else 1 / 8)),
                "upper": float(kwargs.get("upper", args[2] if len(args) > 2 else 1 / 3))}
    if kind == "batch_norm":
        return {"training": bool(kwargs.get("training", args[5] if len(args) > 5 else False))}
    if kind == "attention":
        # scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal) and
        # multi_head_attention_forward(..., is_causal=): an autoregressive model says so here. (The sixth
        # argument of multi_head_attention_forward is a weight, not a flag: then nothing is recorded.)
        causal = kwargs.get("is_causal", args[5] if len(args) > 5 else False)
        return {"is_causal": causal} if isinstance(causal, bool) else {}
    if kind in ("softmax", "log_softmax"):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return {"dim": dim} if isinstance(dim, int) else {}
    if kind == "cat":
        dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else 0))
        return {"dim": dim} if isinstance(dim, int) else {}
    if kind == "pow":
        exponent = kwargs.get("exponent", args[1] if len(args) > 1 else None)
        return {"exponent": float(exponent)} if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) else {}
    return {}
