"""Progress of long steps at a steady rhythm (logger 'pertprobe', kept in each task's .command.log)."""

from __future__ import annotations

import logging
import time

LOG = logging.getLogger("pertprobe.progress")


class Progress:
    """Log `what: done/total unit (percent), elapsed` at most every `every` seconds, and at the end."""

    def __init__(self, what: str, total: int, unit: str = "items", every: float = 30.0) -> None:
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done >= self.total or now - self.last >= self.every:
            self.last = now
            share = done / self.total if self.total else 1.0
            LOG.info("%s: %d/%d %s (%.0f%%), %.0f s", self.what, done, self.total, self.unit, 100 * share,
                     now - self.start)
