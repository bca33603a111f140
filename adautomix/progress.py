"""Progress of long loops: a tqdm bar on a terminal, log lines anywhere else.

A pipeline step's output goes to a log, where a redrawn bar is either invisible or a wall of
carriage returns; there `progress` logs one line per tenth of the work (with its rate), so a
Kubeflow or kfp.local log still shows how far a step has come."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("adautomix.progress")
LOG_EVERY = 0.1  # of the total, between log lines when there is no terminal


def progress(
    items: Iterable[T], desc: str, total: int | None = None, enabled: bool = True, unit: str = "it"
) -> Iterable[T]:
    """`items`, reporting progress on the way: a bar on a terminal, otherwise a log line at
    each tenth of `total` (len(items) when it has one) and at the end. `enabled` False: silent."""
    if not enabled:
        return items
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if sys.stderr.isatty():
        return tqdm(items, desc=desc, total=total, leave=False, unit=unit)
    return _logged(items, desc, total, unit)


def _logged(items: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    started, done = time.perf_counter(), 0
    step = max(1, round((total or 0) * LOG_EVERY))
    for item in items:
        yield item
        done += 1
        if total and (done % step == 0 or done == total):
            rate = done / max(time.perf_counter() - started, 1e-9)
            log.info(
                "%s: %d/%d %s (%.0f%%, %.1f %s/s)",
                desc,
                done,
                total,
                unit,
                100 * done / total,
                rate,
                unit,
            )
    if not total:
        log.info("%s: %d %s in %.1f s", desc, done, unit, time.perf_counter() - started)
