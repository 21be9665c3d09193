"""Why the forward failed, said so the user can act: the batch's dtype or shape against the layer that
rejected it, or the user's own code raising (their frames only)."""
from __future__ import annotations

from typing import Optional

from nnlint.errors import BatchMismatch, ModelRaised, NNLintError
from nnlint.trace.batch import describe_batch, iter_tensors
from nnlint.trace.recorder import Failure


def explain_forward_failure(model, batch, failure: Optional[Failure], exc: Exception) -> NNLintError:
    """The could-not-run error for a forward that raised: a dtype mismatch names both dtypes, a shape
    mismatch the layer and what it expects; anything else is the user's code raising."""
    text = str(exc)
    if failure is not None and failure.exc is exc and any(w in text for w in ("dtype", "scalar type", "Half", "Double", "BFloat16")):
        where = failure.stack[-1][0] if failure.stack else type(model).__name__
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        batch_dtypes = sorted({str(t.dtype).replace("torch.", "") for t in iter_tensors(batch) if t.is_floating_point()})
        want = str(param.dtype).replace("torch.", "") if param is not None else "?"
        return BatchMismatch(
            f"the batch's dtype ({', '.join(batch_dtypes) or 'integer'}) does not match the model's parameters "
            f"({want}) at {where}: convert the batch (e.g. batch.to(torch.{want})) or the model.\n"
            f"torch said: {text.splitlines()[0]}"
        )
    if failure is not None and failure.exc is exc and isinstance(exc, (RuntimeError, ValueError, IndexError)) \
            and failure.stack:
        name, mtype = failure.stack[-1]
        module = dict(model.named_modules()).get(name)
        expects = _expected_input(module) if module is not None else None
        if expects is not None:
            got = "x".join(str(s) for s in failure.shapes[0]) if failure.shapes else "?"
            return BatchMismatch(
                f"the batch does not fit the model: {name} ({mtype}) expects {expects}, "
                f"but received a tensor of shape {got} (the batch is {describe_batch(batch)}).\n"
                f"torch said: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
    return ModelRaised(f"{type(model).__name__}.forward", exc)


def _expected_input(module) -> Optional[str]:
    t = type(module).__name__
    a = vars(module)
    if "in_features" in a:
        return f"inputs whose last dimension is {a['in_features']} (in_features)"
    if "in_channels" in a and t.startswith("Conv"):
        dims = {"1d": "(N, C, L)", "2d": "(N, C, H, W)", "3d": "(N, C, D, H, W)"}.get(t[-2:].lower(), "")
        return f"{a['in_channels']} input channels at dim 1 of a {dims} tensor".replace(" of a  tensor", "")
    if "num_embeddings" in a:
        return f"integer ids in [0, {a['num_embeddings']})"
    if "num_features" in a:
        return f"{a['num_features']} features/channels at dim 1"
    if "normalized_shape" in a:
        return f"trailing dimensions {tuple(a['normalized_shape'])}"
    if "input_size" in a:
        return f"sequences whose feature dimension is {a['input_size']}"
    if "embed_dim" in a:
        return f"embeddings of size {a['embed_dim']}"
    return None
