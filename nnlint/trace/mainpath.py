"""The main path of a trace's training pass: weight layers outside residual branches whose outputs reach
another weight layer with no normalization in between, linked into chains that restart at each
normalization, and how much each one scales the signal (what the vanishing/exploding-activation rules
judge). A part of Structure (structure.py), which it is mixed into; it reads the residual blocks and
values Structure computes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

from nnlint.trace import ops as opnames
from nnlint.trace import vocab
from nnlint.trace.records import OpRecord
from nnlint.trace.vocab import is_weight_layer


@dataclass(frozen=True)
class ChainStart:
    """Where a main-path chain begins: the model input, or the value a normalization (or anything
    nnlint does not follow through: an embedding, a concat, a gate, global pooling) produced."""

    serial: int
    op: Optional[OpRecord]            # None: a model input (or a tensor with no recorded producer)
    std: Optional[float]

    @property
    def label(self) -> str:
        """`the input`, `bn1 (batch_norm)`, `pool (pool)`, `forward (mean)`."""
        if self.op is None:
            return "the input"
        return f"{self.op.module or 'forward'} ({self.op.kind})"


@dataclass
class ChainLink:
    """A main-path weight layer and the scale of the signal there, relative to its chain's start."""

    op: OpRecord
    parent: Optional["ChainLink"]
    start: ChainStart
    out_std: float
    step: float                       # signal scale from the parent's output (or the start) to this output
    factor: float                     # cumulative: the product of the steps from the chain's start
    own_ratio: float                  # this layer alone: output std over input std
    residual_growth: float = 1.0      # scale change along residual blocks crossed on the way, divided out

    def path(self) -> list["ChainLink"]:
        """The links from the chain's start to this one."""
        out: list[ChainLink] = []
        link: Optional[ChainLink] = self
        while link is not None:
            out.append(link)
            link = link.parent
        return out[::-1]


class MainPath:
    """The main-path chains; mixed into Structure (needs its graph, trace, values and blocks)."""

    def is_main_path_layer(self, op: OpRecord) -> bool:
        """A weight layer whose output scale matters for the next layer: outside residual branches,
        not the model's last layer, not re-scaled by a normalization before the next weight layer,
        and not all-zero or constant (NN101/NN102 report those)."""
        if not is_weight_layer(op) or op.index in self.branch_op_indices or op.index in self.shortcut_ops_beside_norms:
            return False
        if op.index not in self._main_path:
            p = self.trace.params.get(op.weight)
            self._main_path[op.index] = not (p is None or p.all_zero or p.rows_identical) \
                and self.graph.reaches_weight_layer(op) is not None and not self._normalized_downstream(op)
        return self._main_path[op.index]

    @cached_property
    def shortcut_ops_beside_norms(self) -> frozenset[int]:
        """The ops of projection shortcuts added to a branch that holds a normalization: P(x) + f(norm(x))
        takes its scale from the normalized branch, so P's own scale does not set the stream's (MaxViT's
        avgpool + 1x1 conv at std 0.02 beside a pre-normalized MBConv: the stream runs 0.3, 0.08,
        0.12 ... 0.47, it does not collapse; benchmarks/TRIAGE.md, J)."""
        return frozenset(o.index for block in self.blocks if block.projection and self.branch_norms(block)
                         for o in block.skip_ops)

    def _normalized_downstream(self, op: OpRecord) -> bool:
        """Every path from the layer meets a normalization before another weight layer or the output. A
        next linear/conv that goes straight into a norm counts as one (a depthwise conv before a
        pointwise conv and its BatchNorm, ConvNeXt's downsample before its depthwise conv and LayerNorm):
        the scale of its input does not survive that norm either."""
        if self.graph.is_model_output(op):
            return False
        norms = 0

        def onward(o: OpRecord) -> bool:
            return not self.is_norm(o) and not vocab.applies_weights(o) and o.kind != "matmul"

        for nxt in self.graph.walk(op, through=onward):
            if self.is_norm(nxt) or (nxt.kind in ("linear", "conv") and self.graph.followed_by_norm(nxt)):
                norms += 1
            elif vocab.applies_weights(nxt) or nxt.kind == "matmul" \
                    or (self.graph.is_model_output(nxt) and not self.graph.next_ops(nxt)):
                return False
        return norms > 0

    @cached_property
    def chains(self) -> list[ChainLink]:
        """Every main-path layer as a link of its chain, in execution order."""
        links: dict[int, ChainLink] = {}
        for op in self.graph.ops:
            if not self.is_main_path_layer(op):
                continue
            inp = self.main_input(op)
            out = op.out
            in_std = self.std(inp) if inp is not None else None
            if out is None or out.nonfinite or not in_std:
                continue
            parent_op, start_serial, crossed = self._chain_back(inp)
            parent = links.get(parent_op.index) if parent_op is not None else None
            if parent is not None:
                start, ref = parent.start, parent.out_std
            else:
                start = ChainStart(start_serial, self.graph.producer.get(start_serial), self.std(start_serial))
                ref = self.rms(start_serial)
            if not ref:
                continue
            step = out.std / ref / crossed
            factor = step * (parent.factor if parent is not None else 1.0)
            links[op.index] = ChainLink(op, parent, start, out.std, step, factor, out.std / in_std, crossed)
        return [links[i] for i in sorted(links)]

    def _chain_back(self, serial: int) -> tuple[Optional[OpRecord], int, float]:
        """From a layer's input, walk back along the main path to the previous main-path layer.

        Returns (that layer or None, the serial where the chain starts when there is none, the scale
        change of the residual stream crossed on the way). The stream's growth is NN403's to judge, and
        the activations between blocks are part of the stream (ResNet's ReLU after each add): from the
        first block's input to the layer's input, the whole stretch is divided out of the chain.
        """
        layer_input = serial
        stream_entry: Optional[int] = None
        parent: Optional[OpRecord] = None
        for _ in range(256):
            prod = self.graph.producer.get(serial)
            if prod is None:
                break
            if is_weight_layer(prod):
                # The previous layer; one left out of the main path starts a new chain at its output.
                parent = prod if self.is_main_path_layer(prod) else None
                break
            block = self.block_of_add.get(prod.index)
            if block is not None and block.projection and self.branch_norms(block):
                break   # P(x) + f(norm(x)): the normalized branch sets the block's scale; a new chain starts
            if block is not None:
                serial = stream_entry = block.skip
                continue
            nxt = self.main_input(prod)
            if self.is_norm(prod) or not self._chain_transparent(prod) or nxt is None:
                break
            serial = nxt
        crossed = 1.0
        if stream_entry is not None:
            before, after = self.std(stream_entry), self.std(layer_input)
            if before and after:
                crossed = after / before
        return parent, serial, crossed

    def _chain_transparent(self, op: OpRecord) -> bool:
        """Ops the main path runs through: one tensor in (bias adds and scalar scalings included),
        except those that start a new signal: embeddings, recurrent cells, attention, softmax, means and
        global average pooling (on a random batch they shrink the std by up to sqrt(H*W), which no init
        causes or fixes)."""
        k = op.kind
        if k in opnames.WEIGHT_OPS or k in ("rnn", "attention", "opaque", "softmax", "log_softmax", "cat", "mean", "random"):
            return False
        if len(self.tensor_inputs(op)) != 1:
            return False
        if k == "pool":
            return not self._is_global_average(op)
        return True

    @staticmethod
    def _is_global_average(op: OpRecord) -> bool:
        """Average pooling down to one position per channel (max pooling keeps the scale)."""
        if "avg" not in op.func:
            return False
        out = op.out
        if out is None or len(out.shape) < 3:
            return True
        spatial = 1
        for d in out.shape[2:]:
            spatial *= d
        return spatial == 1
