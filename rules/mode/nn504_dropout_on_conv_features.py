from __future__ import annotations

from typing import Optional

from nnlint.fix.kinds.channel_dropout import ChannelDropout, ChannelDropoutParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import active_dropouts, call_site, describe_dropout, describe_op, is_functional, location_for, once_per_site
from nnlint.trace import ops as opnames
from nnlint.trace.graph import Graph
from nnlint.trace.records import OpRecord

# Dropout that zeroes single elements; dropout1d/2d/3d and feature_alpha_dropout drop whole channels.
ELEMENTWISE = {"dropout", "dropout_", "alpha_dropout", "alpha_dropout_"}
# Views that re-arrange a map into tokens or vectors (ViT's patch embedding: conv -> flatten ->
# transpose): after them the tensor is no longer a spatial feature map.
LAYOUT_CHANGING = {"flatten", "view", "reshape", "transpose", "permute", "movedim", "unflatten", "t", "squeeze",
                   "unsqueeze", "view_as", "reshape_as", "unbind", "select"}
# Layers after which the signal is not a conv map any more, whatever its shape.
NOT_CONV = opnames.WEIGHT_OPS | {"rnn", "attention", "opaque"}
CHANNEL_DROPOUT = {3: "Dropout1d", 4: "Dropout2d", 5: "Dropout3d"}


def conv_source(graph: Graph, op: OpRecord) -> Optional[OpRecord]:
    """The convolution whose feature map reaches `op` through element-wise ops, norms, pooling and adds,
    without a layout-changing view or another weight layer in between."""
    return graph.first(op, lambda o: o.kind == "conv", up=True,
                       through=lambda o: o.func not in LAYOUT_CHANGING and o.kind not in NOT_CONV)


class DropoutOnConvFeatures(Rule):
    """## What it does
    Follows the lineage of every element-wise dropout (`nn.Dropout`, `F.dropout`, `nn.AlphaDropout`)
    that is active in training, and reports those applied to a convolutional feature map: a tensor of
    3 or more dimensions with spatial extent, computed from a convolution through activations, norms,
    pooling or adds (no flatten and no other weight layer in between).

    ## Why is this bad?
    Neighbouring activations of a feature map are strongly correlated, so a dropped element is
    reconstructed from its neighbours: element-wise dropout barely regularizes a conv layer, but still
    adds noise and slows training. Dropping whole channels (`Dropout2d`, "SpatialDropout") removes
    the correlated neighbours together and regularizes as intended (Tompson et al. 2015).

    A map pooled to a single position (`N x C x 1 x 1`) is not reported: there, element-wise and
    channel dropout are the same. Neither are tokens made from a conv (ViT's patch embedding flattens
    the map first) or dropout after the flatten before the classifier.

    ## Options
    None.

    ## Fix safety
    Unsafe: replaces the module with `nn.Dropout1d/2d/3d` of the same `p` (a functional call with
    `F.dropout2d`), which changes what is dropped.

    ## References
    - Tompson, Goroshin, Jain, LeCun, Bregler, "Efficient Object Localization Using Convolutional
      Networks" (2015): SpatialDropout.
    """

    code = "NN504"
    name = "dropout-on-conv-features"
    severity = "info"
    summary = "element-wise dropout on convolutional feature maps (use Dropout2d)"
    reads = frozenset({"forward"})
    cause = ("p", "replacement")
    fixable = "unsafe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(16, 16, 3), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 16, 16)
            """, module='2'),
        Healthy("""
            model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(16, 16, 3), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            batch = torch.randn(16, 3, 16, 16)
            """, note="""
            or keep `nn.Dropout` for the fully connected layers after the flatten.
            """),
    )

    def check(self, trace):
        graph = Graph.of(trace)
        for op in once_per_site(active_dropouts(graph)):
            out = op.out
            if op.func not in ELEMENTWISE or out is None or len(out.shape) < 3:
                continue
            spatial = 1
            for s in out.shape[2:]:
                spatial *= s
            if spatial <= 1:
                continue
            conv = conv_source(graph, op)
            if conv is not None and conv.out is not None and len(conv.out.shape) == len(out.shape):
                yield self._diagnostic(trace, op, conv)

    def _diagnostic(self, trace, op: OpRecord, conv: OpRecord):
        rank = len(op.out.shape)
        replacement = CHANNEL_DROPOUT.get(rank, "Dropout2d")
        p = op.args.get("p")
        functional = is_functional(trace, op)
        what = describe_dropout(trace, op)
        fix_call = f"F.{replacement.lower()}(x, p={p}, training=self.training)" if functional else f"nn.{replacement}(p={p})"
        conv_name = conv.module or describe_op(trace, conv)
        shape = "x".join(str(s) for s in op.out.shape)
        return self.diagnostic(
            op.module,
            f"{what} zeroes single elements of the {shape} feature map of conv `{conv_name}`: neighbouring "
            f"activations are correlated, so dropped ones are filled in by their neighbours; drop whole "
            f"channels with {fix_call}, or move the dropout to the fully connected layers",
            location=location_for(trace, op.module, op),
            evidence={"p": p, "func": op.func, "shape": list(op.out.shape), "conv": conv_name,
                      "replacement": replacement},
            fix=ChannelDropout.make(op.module, f"replace {what} with {fix_call}",
                                    ChannelDropoutParams(replacement, p, call_site(trace, op))),
        )
