"""Bookkeeping writes on the read path: when a token was last used, when a session was last seen.

Every authenticated request would otherwise write a row, so a read (`GET /api/v1/jobs/ID`) could fail
with "database is locked" while a job commits its results on SQLite. These writes are therefore cheap
(at most once per `TOUCH_INTERVAL` for each token or session) and best-effort: they wait only briefly for
a lock (`Store.begin_brief`) and, when they cannot have it, are logged and dropped — the request goes on.
A dropped touch is made again by the next request.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Executable

from tianmu.store.database import Store

__all__ = ["TOUCH_INTERVAL", "best_effort", "due"]

TOUCH_INTERVAL = dt.timedelta(minutes=1)
"""A last-used or last-seen time is written again only once it is older than this."""

_log = logging.getLogger(__name__)


def due(last: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a time last written at `last` (None: never) is worth writing again at `now`."""
    return last is None or now - last >= TOUCH_INTERVAL


def best_effort(store: Store, statement: Executable, what: str) -> bool:
    """Run a bookkeeping write; False (and a warning naming `what`) when the database would not have it."""
    try:
        with store.begin_brief() as conn:
            conn.execute(statement)
    except OperationalError as exc:
        # A lock held by a committing job, or a database gone read-only: neither is the reader's fault.
        _log.warning("%s not recorded: %s", what, exc.orig)
        return False
    return True
