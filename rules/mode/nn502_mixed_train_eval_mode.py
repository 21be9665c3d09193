from __future__ import annotations

from nnlint.fix.kinds.set_mode import SetMode, SetModeParams
from nnlint.registry import Faulty, Healthy, Rule
from nnlint.trace.vocab import is_norm_type

# Modules whose forward depends on the training flag.
MODE_DEPENDENT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
                  "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
                  "LazyBatchNorm2d", "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")


class MixedTrainEvalMode(Rule):
    """## What it does
    Compares the `training` flag of the model with that of its mode-dependent submodules (dropout,
    BatchNorm) as nnlint found them: a model in eval mode with some in training mode, or the reverse.

    ## Why is this bad?
    A model in eval mode whose BatchNorm is still in training mode normalizes each test batch with its
    own statistics (and updates the running stats while evaluating); a dropout in training mode keeps
    dropping. Predictions depend on the batch and are worse. It usually comes from calling `.train()`
    on a submodule, or replacing a submodule after `model.eval()`.

    The reverse, a model in training mode with a submodule in eval mode, is not reported when that
    submodule's parameters are frozen (`requires_grad=False`): frozen BatchNorm during fine-tuning is
    intentional.

    ## Options
    None.

    ## Fix safety
    Safe: sets the whole model to the root's mode.
    """

    code = "NN502"
    name = "mixed-train-eval-mode"
    severity = "error"
    summary = "model in eval mode with submodules in training mode (or the reverse)"
    reads = frozenset({"modules"})
    cause = ("model_training",)
    fixable = "safe"

    examples = (
        Faulty("""
            model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
            model.eval()
            model[1].train()                     # a submodule switched back after model.eval()
            batch = torch.randn(64, 32)
            """, module='1'),
        Healthy("""
            model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
            model.eval()                         # last, after every change to submodules
            batch = torch.randn(64, 32)
            """),
    )

    def check(self, trace):
        root = trace.modules.get("")
        if root is None:
            return
        for name, rec in trace.modules.items():
            if not name or rec.type not in MODE_DEPENDENT or rec.training == root.training:
                continue
            if rec.type.startswith("InstanceNorm") and not rec.attrs.get("track_running_stats"):
                continue
            if root.training and not rec.training and rec.params and all(
                    not trace.params[p].requires_grad for p in rec.params if p in trace.params):
                continue
            if root.training:
                message = (f"{rec.type} is in eval mode while the model is in training mode: "
                           "model.train() would reset it; freeze it on purpose by overriding train() or "
                           "setting requires_grad=False on its parameters")
                fix = SetMode.make(name, "call model.train() after changing submodules", SetModeParams(training=True))
            else:
                what = "normalizes with each batch's own statistics" if is_norm_type(rec.type) else "keeps dropping activations"
                message = (f"{rec.type} is in training mode while the model is in eval mode: it {what}; "
                           "call model.eval() after changing submodules")
                fix = SetMode.make(name, "call model.eval() on the whole model", SetModeParams(training=False))
            yield self.diagnostic(name, message, location=rec.location,
                                  evidence={"module_training": rec.training, "model_training": root.training}, fix=fix)
