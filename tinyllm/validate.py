"""One check for the package's integer arguments, with one wording for its error.

It sits below every step of the data flow and imports nothing of the package.
"""

from __future__ import annotations


def check_int(name: str, value, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` if it is an int in ``low..high`` (no upper bound if ``high`` is None);
    else raise ``ValueError``: ``"n_layer must be an int >= 1, got 0"``. A bool is not an
    int here, although Python counts ``True`` as 1: ``n_layer=True`` is a mistake."""
    in_range = isinstance(value, int) and low <= value and (high is None or value <= high)
    if isinstance(value, bool) or not in_range:
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value
