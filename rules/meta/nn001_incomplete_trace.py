from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule


class IncompleteTrace(Rule):
    """## What it does
    Reports the parts of the model that ran where nnlint's tracer could not see inside: TorchScript
    modules, `torch.compile`d regions, C++ extensions. A module with weights that produced an output
    while no torch call was observed inside it is such a region.

    ## Why is this bad?
    It is not a fault in the model. It means the rules that read activations (dead units, saturation,
    signal propagation) could not look inside that module, so a clean report says less about it.

    ## Options
    None.

    ## Fix safety
    No fix: this is information about the check.
    """

    code = "NN001"
    name = "incomplete-trace"
    severity = "info"
    summary = "part of the model ran where the tracer could not see (TorchScript, compiled, C++)"
    reads = frozenset({"forward"})

    examples = (
        Faulty("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = torch.jit.script(nn.Sequential(nn.Linear(16, 32), nn.ReLU()))   # opaque to the tracer
                    self.head = nn.Linear(32, 2)

                def forward(self, x):
                    return self.head(self.encoder(x))


            model = Net()
            batch = torch.randn(32, 16)
            """, module='encoder'),
        Healthy("""
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU())   # check the eager module
                    self.head = nn.Linear(32, 2)

                def forward(self, x):
                    return self.head(self.encoder(x))


            model = Net()
            batch = torch.randn(32, 16)
            """, note="""
            Check the eager module (`Encoder()`) before scripting or compiling it.
            """),
    )

    def check(self, trace):
        for region in trace.incomplete:
            module = region.module
            yield self.diagnostic(
                module,
                f"{region.type} ran as an opaque region (TorchScript, compiled or a C++ extension): "
                "activation rules could not look inside it; check the eager module to cover it",
                location=trace.location_of(module),
                evidence={"type": region.type},
            )
