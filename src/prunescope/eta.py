"""How long a run's remaining levels should take, from the levels it has trained: every
level trains the same epochs on the same data, so they take about as long."""

from __future__ import annotations

import time

from prunescope.rundir.layout import RunDir
from prunescope.wording import format_seconds, plural


def time_left(rd: RunDir, levels: int) -> str | None:
    """ "estimate: 3m more training for 2 levels (done around 14:05), then the analyses",
    or None before the first trained level (a branch's level 0 is its run's: 0 s)."""
    all_levels = range(levels + 1)
    left = [lv for lv in all_levels if not rd.level_complete(lv)]
    seconds = [
        float(rd.level_record(lv).get("seconds", 0.0)) for lv in all_levels if rd.level_complete(lv)
    ]
    seconds = [s for s in seconds if s > 0]
    if not left or not seconds:
        return None
    total = len(left) * sum(seconds) / len(seconds)
    finish = time.strftime("%H:%M", time.localtime(time.time() + total))
    return (
        f"estimate: {format_seconds(total)} more training for {plural(len(left), 'level')} "
        f"(done around {finish}), then the analyses"
    )
