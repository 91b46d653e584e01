"""Class docstrings for the compiled build, where mypyc leaves them empty.

The installed package keeps each compiled module's source beside its extension, so a public
class's docstring is read back from there, once, at import; plain Python needs nothing.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from inspect import cleandoc
from pathlib import Path


def restore_class_docstrings(*classes: type) -> None:
    """Give each class whose `__doc__` is empty the docstring its source declares."""
    for cls in classes:
        if cls.__doc__:
            continue
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None) or ""
        source = Path(module_file).with_name(cls.__module__.rpartition(".")[2] + ".py")
        doc = _class_docstrings(str(source)).get(cls.__name__)
        if doc:
            cls.__doc__ = doc


_CLASS_DOC = re.compile(r'^class (\w+)\b[^\n]*:\n    """(.*?)"""', re.MULTILINE | re.DOTALL)


@cache
def _class_docstrings(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:  # no source installed: the docstrings stay empty, nothing else changes
        return {}
    return {name: cleandoc(doc) for name, doc in _CLASS_DOC.findall(text)}
