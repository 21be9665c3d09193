"""Setting one keyword argument of the call that built a module (`bias=False`, `batch_first=True`): the
source half that the constructor-argument kinds share."""
from __future__ import annotations


def set_keyword(ctx, fix, class_names: set[str], kind: str, keyword: str, value: str) -> int:
    """Rewrite the construction call of `fix.target` so it passes `keyword=value` (replacing the
    keyword if given, else appended); returns the call's line."""
    import libcst as cst

    from nnlint.fix.edits import NodeEdit

    call = ctx.construction_call(fix.target, class_names, kind)

    def rewrite(node: cst.Call) -> cst.Call:
        args = list(node.args)
        new = cst.Arg(keyword=cst.Name(keyword), value=cst.parse_expression(value),
                      equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                            whitespace_after=cst.SimpleWhitespace("")))
        for i, a in enumerate(args):
            if a.keyword is not None and a.keyword.value == keyword:
                args[i] = a.with_changes(value=new.value)
                return node.with_changes(args=args)
        if args:
            args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return node.with_changes(args=args + [new])

    ctx.edits.node_edits.append(NodeEdit(call.node, rewrite))
    return call.start_line
