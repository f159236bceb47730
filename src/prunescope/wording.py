"""Words for people: plurals, durations, and level ranges in messages and logs."""

from __future__ import annotations

from collections.abc import Iterable


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 level", "2 levels", "0 epochs"."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def level_list(levels: Iterable[int]) -> str:
    """ "3", "0-4", "0-2, 5, 7-8": runs of consecutive levels as ranges."""
    levels = sorted(set(levels))
    parts: list[str] = []
    start = prev = None
    for lv in [*levels, None]:
        if lv is not None and prev is not None and lv == prev + 1:
            prev = lv
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = lv
    return ", ".join(parts)
