from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rulekit import fmt
from nnlint.trace.graph import Graph
from nnlint.trace.records import ModuleCall, Trace
from nnlint.trace.structure import Structure


class StatefulModuleReuse(Rule):
    """## What it does
    Finds a module with running state, one whose buffers the training forward wrote to (BatchNorm's
    `running_mean`/`running_var`, any running statistic), that is called at more than one place in
    one forward. The message quotes the mean and std of its input at each call, measured on the
    batch.

    Modules without running state (a Linear, a LayerNorm, an activation) shared between places are
    weight sharing, which is a design choice: not reported.

    ## Why is this bad?
    Its running statistics average the distributions of all its call sites, so in eval mode each
    place is normalized with statistics that fit none of them; the train/eval gap grows with how
    different they are. In training mode each call normalizes with its own batch statistics, so the
    training loss does not show it.

    ## Options
    None.

    ## Fix safety
    No automatic fix: build one instance per call site (`self.bn2 = nn.BatchNorm1d(64)` instead of
    `self.bn2 = self.bn1`).
    """

    code = "NN706"
    name = "stateful-module-reuse"
    severity = "warning"
    summary = "one module with running state (a BatchNorm) called at several places in one forward"
    reads = frozenset({"forward", "modules"})

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(32, 64)
                    self.fc2 = nn.Linear(64, 64)
                    self.bn = nn.BatchNorm1d(64)          # one BatchNorm ...
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    x = torch.relu(self.bn(self.fc1(x)))
                    x = torch.relu(self.bn(self.fc2(x)))  # ... called at two places
                    return self.head(x)


            model = Net()
            batch = torch.randn(64, 32)
            """, module="bn"),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(32, 64)
                    self.fc2 = nn.Linear(64, 64)
                    self.bn1 = nn.BatchNorm1d(64)
                    self.bn2 = nn.BatchNorm1d(64)
                    self.head = nn.Linear(64, 10)

                def forward(self, x):
                    x = torch.relu(self.bn1(self.fc1(x)))
                    x = torch.relu(self.bn2(self.fc2(x)))
                    return self.head(x)


            model = Net()
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace: Trace):
        stateful = {name.rpartition(".")[0] for name in trace.updated_buffers}
        calls: dict[str, list[ModuleCall]] = {}
        for call in trace.calls:
            if call.phase == "train" and call.module in stateful:
                calls.setdefault(call.module, []).append(call)
        graph = Graph.of(trace)
        structure = Structure.of(trace)
        for module, made in calls.items():
            if len(made) < 2:
                continue
            rec = trace.modules.get(module)
            kind = rec.type if rec is not None else "module"
            places = [_place(graph, c) for c in made]
            inputs = [structure.summary(c.inputs[0]) if c.inputs else None for c in made]
            measured = ""
            if all(s is not None and not s.nonfinite for s in inputs):
                measured = " (inputs: " + ", ".join(f"mean {fmt(s.mean)} std {fmt(s.std)}" for s in inputs[:4]) + ")"
            buffers = sorted(b.rpartition(".")[2] for b in trace.updated_buffers if b.rpartition(".")[0] == module)
            yield self.diagnostic(
                module,
                f"{module} ({kind}) is called at {len(made)} places in one forward ({', '.join(places[:4])}){measured}: "
                f"its running state ({', '.join(b for b in buffers if b != 'num_batches_tracked') or ', '.join(buffers)}) "
                "averages their distributions, so in eval mode it fits none of them; give each call site its own "
                f"{kind}",
                location=trace.location_of(module),
                evidence={"calls": len(made), "places": places, "buffers": buffers,
                          "input_std": [s.std if s is not None else None for s in inputs]},
            )


def _place(graph: Graph, call: ModuleCall) -> str:
    """`after fc1`: the module (or op) that produced the call's input."""
    producer = graph.producer.get(call.inputs[0]) if call.inputs else None
    if producer is None:
        return "on the input"
    return f"after {producer.module or producer.func + '()'}"
