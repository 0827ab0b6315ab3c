"""Progress bars on long work (tuning trials, compile stages, bench runs).

One place decides whether a bar shows: on a terminal only (stderr), never with ``quiet``, so
logs and pipes stay clean. Bars are tqdm's; callers use ``update``, ``set_postfix_str`` and
``write`` (a line above the bar).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def enabled(quiet: bool = False) -> bool:
    """Bars show on an interactive stderr unless ``quiet``."""
    return not quiet and sys.stderr.isatty()


def bar(total: float | None, desc: str, unit: str = "it", quiet: bool = False, **kw: Any) -> tqdm:
    """A tqdm bar on stderr (a no-op bar when not ``enabled``); use it as a context manager."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled(quiet),
        dynamic_ncols=True,
        leave=False,
        **kw,
    )
