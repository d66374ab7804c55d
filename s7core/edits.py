"""What an edit of the layer table did: which rows changed, and, when a later row fails, how the edit caused it.

The validator names the layer that fails. When a student changes row 3 (stride 9) and row 20 (an avgpool)
then has nothing to pool, that message alone points away from the change; `blame_edit` names the changed
row, what it did to the map size, and the row that fails because of it.
"""

from __future__ import annotations

import difflib

from s7core.spec import Layer, NetworkSpec, SpecError, infer_shapes, shapes_until_error


def _opcodes(before: list[Layer], after: list[Layer]) -> list[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()


def changed_rows(before: list[Layer], after: list[Layer]) -> list[int]:
    """The positions in `after` of rows that are new or changed compared with `before`."""
    return [j for tag, _, _, j1, j2 in _opcodes(before, after) if tag in ("replace", "insert") for j in range(j1, j2)]


def _old_position(before: list[Layer], after: list[Layer], row: int) -> int | None:
    """Where changed row `row` of `after` was in `before` (None for a row that was inserted)."""
    for tag, i1, i2, j1, j2 in _opcodes(before, after):
        if tag == "replace" and j1 <= row < j2 and i1 + row - j1 < i2:
            return i1 + row - j1
    return None


def _describe(lay: Layer, old: Layer | None) -> str:
    """The fields of `lay` that differ from `old`, e.g. 'stride 9' (its whole label for a new row)."""
    if old is None or old.type != lay.type:
        return lay.label()
    diffs = [f"{name} {value}" for name, value in lay.fields().items() if getattr(old, name) != value]
    return ", ".join(diffs) or lay.label()


def blame_edit(before: NetworkSpec, after: NetworkSpec, error: SpecError) -> str | None:
    """A sentence tying a failing later row to the row the student changed; None when the changed row is the one
    that fails, when nothing changed before it, or when the failure is not about a layer."""
    if error.position is None:
        return None
    old, new = list(before.layers), list(after.layers)
    changed = [i for i in changed_rows(old, new) if i <= error.position]
    if not changed or changed[-1] == error.position:
        return None
    row = changed[-1]
    shapes, _ = shapes_until_error(after)
    if row + 1 >= len(shapes):
        return None
    old_row = _old_position(old, new, row)
    what = _describe(new[row], old[old_row] if old_row is not None else None)
    text = f"Your edit of row {row} ({new[row].type}: {what}) makes its output {shapes[row + 1]}"
    if old_row is not None:
        text += f" (it was {infer_shapes(before)[old_row + 1]})"
    return f"{text}; because of that, row {error.position} ({new[error.position].type}) fails."
