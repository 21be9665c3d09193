from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.trace.records import Trace


def unused_modules(trace: Trace) -> list[str]:
    """Modules with trainable parameters that the training forward never called and whose parameters
    no op read (a tied weight used elsewhere counts as read): the outermost of each unused subtree.
    Empty when nothing ran (a model on the meta device); modules inside a region the tracer could not
    see (TorchScript, a C++ extension) are never among them: there, not seeing a call proves nothing."""
    if not trace.ops:
        return []
    used = {name for op in trace.ops_in("train") for name in map(trace.param_serials.get, op.inputs) if name}
    lively: set[str] = set()
    for name in [c.module for c in trace.calls if c.phase == "train"] + [trace.params[p].module for p in used
                                                                          if p in trace.params]:
        parts = name.split(".") if name else []
        lively.update(".".join(parts[:n]) for n in range(len(parts) + 1))
    hidden = [r.module for r in trace.incomplete] + [n for n, m in trace.modules.items() if m.scripted]

    def unused(name: str) -> bool:
        if name in lively or any(name == h or name.startswith(h + ".") for h in hidden):
            return False
        owned = [p.tied_to or p.name for p in trace.params.values()
                 if p.requires_grad and (p.module == name or p.module.startswith(name + "."))]
        return bool(owned) and not any(p in used for p in owned)

    return [name for name in trace.modules if name and unused(name) and name.rpartition(".")[0] in lively]


def _skipped_by_a_draw(name: str, drawing: set[str]) -> bool:
    """A module around `name` drew a random number in the training forward (LayerDrop: Hugging Face's
    WavLM, Wav2Vec2 and others skip each layer when `torch.rand([]) < layerdrop`): a layer the eval
    forward calls was skipped by chance on this pass, not left unused."""
    parts = name.split(".")
    return any(".".join(parts[:n]) in drawing for n in range(len(parts)))


ROUTING_OPS = ("topk", "argmax")   # how a router picks the experts a token goes to


def _skipped_by_a_router(name: str, trace: Trace, called: set[str]) -> bool:
    """An expert of a mixture of experts that its router sent no token to on this batch (Switch
    Transformers' top-1 routing over a few tokens, found in a corpus sweep 2026-12-02): a sibling of
    its type was called in the training forward, and a top-k or an argmax ran there in the module that
    holds their container (the MoE block: its router). Which experts a batch reaches is data, not
    structure. A layer a loop forgets has no router beside it, and is still reported."""
    parent = name.rpartition(".")[0]
    kind = trace.modules[name].type
    if not any(other in called for other, m in trace.modules.items()
               if other != name and other.rpartition(".")[0] == parent and m.type == kind):
        return False
    block = parent.rpartition(".")[0]

    def inside(module: str) -> bool:
        return module == block or (block != "" and module.startswith(block + "."))

    return any(op.kind in ROUTING_OPS and inside(op.module) for op in trace.ops_in("train"))


class UnusedModule(Rule):
    """## What it does
    Finds modules with trainable parameters that the training forward never calls, and whose
    parameters no op reads (a weight tied to a used one, GPT-2's `lm_head` to its embedding, counts
    as used). A container of such modules is reported once. The no-gradient rule (NN406) then says
    nothing about those parameters: this is the cause.

    Not reported: frozen modules (`requires_grad=False`), modules inside a TorchScript or C++ region
    the tracer cannot see into, and a module the eval forward calls where a module around it drew a
    random number in the training forward: LayerDrop skipped it by chance (Hugging Face WavLM at its
    config's layerdrop 0.1 lost a layer in one corpus sweep of two, found 2026-12-02), and an expert of
    a mixture of experts its router sent no token to on the sample batch, while other experts of its
    block ran (Switch Transformers' top-1 routing over 16 tokens, found the same day).

    ## Why is this bad?
    A layer that is defined but never used never trains; usually the forward does not do what its
    author thinks (a LayerNorm built and forgotten, a head replaced but the old one kept). It also
    costs memory, optimizer state and checkpoint space, and its parameters get weight decay only.

    ## Options
    None.

    ## Fix safety
    No automatic fix: call it in forward, or remove it.
    """

    code = "NN705"
    name = "unused-module"
    severity = "warning"
    summary = "a module with trainable parameters that forward never calls"
    reads = frozenset({"forward", "modules"})

    examples = (
        Faulty("""
            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
                    self.norm = nn.LayerNorm(64)              # defined ...
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    return self.head(self.encoder(x))         # ... never used


            model = Classifier()
            batch = torch.randn(64, 32)
            """, module="norm"),
        Healthy("""
            class Classifier(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
                    self.norm = nn.LayerNorm(64)
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    return self.head(self.norm(self.encoder(x)))


            model = Classifier()
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace: Trace):
        eval_called = {c.module for c in trace.calls if c.phase == "eval"}
        train_called = {c.module for c in trace.calls if c.phase == "train"}
        drawing = {op.module for op in trace.ops_in("train") if op.kind == "random"}
        for name in unused_modules(trace):
            if name in eval_called and _skipped_by_a_draw(name, drawing) or _skipped_by_a_router(name, trace, train_called):
                continue
            rec = trace.modules[name]
            params = [p for p in trace.params.values() if p.requires_grad and not p.tied_to
                      and (p.module == name or p.module.startswith(name + "."))]
            count = sum(p.numel for p in params)
            also = " (only the eval-mode forward calls it)" if name in eval_called else ""
            yield self.diagnostic(
                name,
                f"{name} ({rec.type}, {count:,} trainable parameters) is never called in "
                f"the training forward{also}: it never trains, and the optimizer and checkpoints carry it for nothing; "
                "call it in forward, or remove it",
                location=trace.location_of(name),
                evidence={"params": [p.name for p in params], "numel": count, "type": rec.type},
            )
