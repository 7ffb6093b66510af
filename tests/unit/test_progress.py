"""Long steps report progress: what, how many of how many, elapsed."""

import logging

from pertprobe.models.checkpoint import batches
from pertprobe.progress import Progress


def test_progress_logs_at_the_end_and_at_most_every_interval(caplog):
    caplog.set_level(logging.INFO, logger="pertprobe")
    rare = Progress("rare", 10, "cells", every=1e9)
    for done in range(1, 11):
        rare.update(done)
    often = Progress("often", 3, "cells", every=0.0)
    for done in range(1, 4):
        often.update(done)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("rare")] == ["rare: 10/10 cells (100%), 0 s"]
    assert [m.split(" (")[0] for m in messages if m.startswith("often")] == [f"often: {i}/3 cells" for i in (1, 2, 3)]


def test_batches_report_the_cells_done(caplog):
    caplog.set_level(logging.INFO, logger="pertprobe")
    assert [s.stop for s in batches(10, 4, "model: cells embedded")] == [4, 8, 10]
    assert any(r.getMessage().startswith("model: cells embedded: 10/10 cells (100%)") for r in caplog.records)
    caplog.clear()
    list(batches(10, 4))  # without a name: silent
    assert not caplog.records
