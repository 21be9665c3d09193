from __future__ import annotations

from nnlint.registry import Faulty, Healthy, Rule
from nnlint.rules.optimizer._groups import optimizer_location

# The smallest positive float16 (a subnormal): an eps below it is stored as 0 in a float16 optimizer
# state, and sqrt(v) + eps divides by zero wherever v underflowed.
FP16_TINY = 2.0 ** -24
FP16_EPS = 1e-4     # the eps float16 training recipes use (Micikevicius et al. 2018 keep fp32 master weights instead)


class OptimizerHyperparameters(Rule):
    """## What it does
    Reads each parameter group's hyperparameters and reports the values that cannot train:
    - `lr` of 0 (nothing moves) or negative (gradient ascent);
    - `momentum` of 1 or more (the velocity never decays: every past gradient is applied again at every
      step, and the update grows without bound) or negative;
    - Adam-style `betas` outside [0, 1) (beta2 = 1 freezes the second moment at its first value;
      beta >= 1 makes the bias correction divide by zero or flip sign);
    - `eps` of 0, or, for a group whose parameters are float16, an `eps` below float16's smallest
      positive value (2**-24 = 6e-8: Adam's default 1e-8 is stored as 0 there), so sqrt(v) + eps is 0
      wherever the squared gradient underflowed, and the step divides by zero.
    One finding per group and value, naming the group.

    ## Why is this bad?
    Each of these makes training do nothing, or diverge, from the first step, and none of them raises.
    `lr=0` is a common leftover of a schedule or a sweep; `momentum=1.0` a confusion with "1 - momentum"
    conventions (Keras' BatchNorm momentum, EMA decay); float16 parameters with Adam's default eps
    give inf/NaN updates once gradients are small.

    ## Options
    None.

    ## Fix safety
    No automatic fix: the message names the value to use.
    """

    code = "NN803"
    name = "optimizer-hyperparameters"
    severity = "warning"
    summary = "lr 0, momentum or betas out of range, eps too small for the parameters' dtype"
    reads = frozenset({"optimizer"})
    about = "model"
    cause = ("finding",)

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.01, momentum=1.0)   # momentum < 1
            """, module=''),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
            batch = torch.randn(16, 32)


            def optimizer(model):
                return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            """),
    )

    def check(self, trace):
        opt = trace.optimizer
        if opt is None:
            return
        location = optimizer_location(trace)
        for i, g in enumerate(opt.groups):
            where = f"parameter group {i} of {opt.type}" if len(opt.groups) > 1 else opt.type
            for finding, value, message in self._problems(g, opt.type):
                yield self.diagnostic("", f"{where}: {message}", location=location,
                                      evidence={"group": i, "optimizer": opt.type, "value": value, "finding": finding})

    @staticmethod
    def _problems(g, optimizer: str):
        lr, momentum, betas, eps = g.get("lr"), g.get("momentum"), g.get("betas"), g.get("eps")
        if not g.get("params") and not g.get("foreign"):
            return
        if lr is not None and lr == 0:
            yield "lr", lr, "lr=0: no parameter moves; set the learning rate (Adam-family 1e-4 to 3e-3, SGD 0.01 to 0.1)"
        elif lr is not None and lr < 0:
            yield "lr", lr, f"lr={lr:g} is negative: every step climbs the loss; use lr={-lr:g}"
        if momentum is not None and not 0 <= momentum < 1:
            yield "momentum", momentum, (f"momentum={momentum:g} is outside [0, 1): " + (
                "the velocity never decays, so every past gradient is applied again at each step and the update "
                "grows without bound" if momentum >= 1 else "a negative momentum reverses the last update")
                + "; use momentum=0.9")
        for k, beta in enumerate(betas or ()):
            if beta is not None and not 0 <= beta < 1:
                yield f"beta{k + 1}", beta, (f"betas[{k}]={beta:g} is outside [0, 1): the moment average "
                                             f"{'never forgets its first value' if beta == 1 else 'is not an average'} and "
                                             f"the bias correction 1 - beta**t {'is 0' if beta == 1 else 'changes sign'}; "
                                             f"use betas=(0.9, 0.999)")
        if eps is not None and eps <= 0:
            yield "eps", eps, f"eps={eps:g}: sqrt(v) + eps is 0 wherever a gradient is 0, and the step divides by zero; use eps=1e-8"
        elif eps is not None and "float16" in (g.get("dtypes") or ()) and eps < FP16_TINY:
            yield "eps", eps, (f"eps={eps:g} on float16 parameters is stored as 0 (float16's smallest value is "
                               f"{FP16_TINY:.1e}): wherever the squared gradient underflows, the step divides by zero; "
                               f"use eps={FP16_EPS:g}, or keep float32 parameters under torch.autocast")
