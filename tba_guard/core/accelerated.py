"""The one import of the accelerated functions, as markupsafe does it: the C of `_speedups.c`
when it is built (the compiled build), else its Python twin in `_native.py` (the pure build).

header.py and signature.py take these names from here and nowhere else, so that one switch (the
`accelerated` fixture of tests/conftest.py) runs their tests on either.
"""

from __future__ import annotations

try:
    from ._speedups import header_parameters, normalized_for_base_string
except ImportError:  # the pure-Python build
    from ._native import header_parameters, normalized_for_base_string

__all__ = ["header_parameters", "normalized_for_base_string"]
