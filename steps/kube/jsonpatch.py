"""RFC 6902 patches computed from (old, new) documents, and a local applier to check them.

Why our own small diff: merge patch replaces whole lists (v1beta1 `spec.components`, every env list),
and CRDs take no strategic merge patch. The diff appends (`add …/-`), removes by index with a `test`
of the removed element first, and recurses into same-length lists element by element, so a patch
never rewrites a list it does not own. Whole-value replacement is the fallback only for lists whose
shape changed in some other way.
"""

from __future__ import annotations

import copy
from typing import Any


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def _removed_indices(old: list, new: list) -> list[int] | None:
    """Indices of `old` whose removal leaves exactly `new` (greedy subsequence), or None."""
    removed, j = [], 0
    for i, item in enumerate(old):
        if j < len(new) and item == new[j]:
            j += 1
        else:
            removed.append(i)
    return removed if j == len(new) else None


def diff(old: Any, new: Any, path: str = "") -> list[dict]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict] = []
        for key in old:
            if key not in new:
                ops.append({"op": "test", "path": path + pointer(key), "value": old[key]})
                ops.append({"op": "remove", "path": path + pointer(key)})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": path + pointer(key), "value": value})
            else:
                ops.extend(diff(old[key], value, path + pointer(key)))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        if len(new) > len(old) and new[: len(old)] == old:
            return [{"op": "add", "path": path + "/-", "value": item} for item in new[len(old) :]]
        if len(new) < len(old):
            removed = _removed_indices(old, new)
            if removed is not None:
                ops = []
                for index in reversed(removed):
                    ops.append({"op": "test", "path": f"{path}/{index}", "value": old[index]})
                    ops.append({"op": "remove", "path": f"{path}/{index}"})
                return ops
        if len(new) == len(old):
            ops = []
            for index, (a, b) in enumerate(zip(old, new)):
                ops.extend(diff(a, b, f"{path}/{index}"))
            return ops
    return [{"op": "test", "path": path, "value": old}, {"op": "replace", "path": path, "value": new}]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    tokens = [_unescape(t) for t in path.split("/")[1:]]
    parent = doc
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last: str | int = tokens[-1]
    if isinstance(parent, list) and last != "-":
        last = int(last)
    return parent, last


class TestFailed(Exception):
    pass


def apply(doc: Any, ops: list[dict]) -> Any:
    """Applies a patch to a copy (for tests and dry runs); raises TestFailed like the API server's 422."""
    result = copy.deepcopy(doc)
    for op in ops:
        if op["path"] == "":
            if op["op"] == "test" and result != op["value"]:
                raise TestFailed("root")
            if op["op"] in ("replace", "add"):
                result = copy.deepcopy(op["value"])
            continue
        parent, key = _walk(result, op["path"])
        if op["op"] == "test":
            try:
                current = parent[key]
            except (KeyError, IndexError):
                raise TestFailed(op["path"]) from None
            if current != op["value"]:
                raise TestFailed(op["path"])
        elif op["op"] == "add":
            if isinstance(parent, list):
                if key == "-":
                    parent.append(copy.deepcopy(op["value"]))
                else:
                    parent.insert(int(key), copy.deepcopy(op["value"]))  # _walk made a list index an int
            else:
                parent[key] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[key]
        elif op["op"] == "replace":
            parent[key] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return result
