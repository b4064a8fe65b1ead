"""Parse once, analyse many: the one pass of a job's log files through every event engine.

Each log file is opened once; each of its streams (the file, or each zip member) is parsed once, and
every event goes to each event engine's sink that wants that stream (`EventSink.begin`). A plain text
file that no reader understands is read again from its start on the same open file, as numbered lines,
for the engines that look for indicators in any text; so are the lines a reader could not parse (a mixed
file: an access log followed by free text), as `text` events among the stream's events. Reading is
bounded by `ReadLimits` (line size, decompressed size and ratio, EVTX spool); damage in one file stops
that file's stream with a located error, never the pass. A file deleted since the walk listed it (a
live system changes as it is assessed) is counted in one note, not reported as an error per file. The
live monitor feeds the same sinks.

Large inputs are split into contiguous groups of files, each group parsed in a forked worker with its
own sinks (the engines' compiled rules are inherited, never pickled); the partials come back in file
order and each engine combines them, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tianmu.core.engine import CollectedFile, EngineResult, EventEngine, EventSink, JobContext
from tianmu.core.forking import fork_map
from tianmu.readers.limits import ReadLimits
from tianmu.readers.sources import iter_log_members

__all__ = ["PARALLEL_FROM", "run_event_pass"]

PARALLEL_FROM = 16 << 20
"""Bytes of logs from which the pass runs in parallel processes: forking and sending findings back cost
more than they save on a few megabytes."""
_GROUPS_PER_WORKER = 4


def run_event_pass(
    files: Sequence[CollectedFile],
    engines: Sequence[EventEngine],
    job: JobContext,
    *,
    workers: int | None = None,
    limits: ReadLimits | None = None,
) -> list[EngineResult]:
    """Every engine's result over the events of `files`, in the order of `engines`."""
    limits = limits or ReadLimits()
    if not engines:
        return []
    if workers is None:
        size = sum(file.size for file in files)
        workers = min(len(files), os.cpu_count() or 1) if size > PARALLEL_FROM else 1
    groups = _groups(files, workers * _GROUPS_PER_WORKER if workers > 1 else 1)

    def parse_group(group: Sequence[CollectedFile]) -> tuple[list[Any], int]:
        sinks = [engine.open(job) for engine in engines]
        vanished = 0
        for file in group:
            if job.progress is not None and workers == 1:
                job.progress(file.relpath)
            if not os.path.lexists(file.path):
                # Deleted since the walk listed it (a live system: a database's files, temporary
                # folders): counted once in a note, not one "cannot open" error per file.
                vanished += 1
                continue
            _parse_file(file, sinks, limits)
        return [sink.partial() for sink in sinks], vanished

    per_group: list[list[Any]] = []
    vanished = 0
    for partials, gone in fork_map(parse_group, groups, workers):
        per_group.append(partials)
        vanished += gone
        if job.progress is not None and workers > 1:
            job.progress(f"{len(per_group)}/{len(groups)} groups of logs")
    results = [
        engine.combine([partials[index] for partials in per_group], job)
        for index, engine in enumerate(engines)
    ]
    if vanished:
        # One note for the pass, on the first engine's result: the assessment's notes are one list.
        results[0].notes.append(f"logs: {vanished} file(s) vanished between the walk and their reading")
    return results


def _parse_file(file: CollectedFile, sinks: Sequence[EventSink], limits: ReadLimits) -> None:
    members = iter_log_members(file.path, text_fallback=True, unparsed_text=True, limits=limits)
    for stream, stats, events in members:
        wanting = [sink for sink in sinks if sink.begin(stream)]
        if not wanting:
            continue  # nobody wants it: not even parsed
        if len(wanting) == 1:
            add = wanting[0].add
            for event in events:
                add(event)
        else:
            for event in events:
                for sink in wanting:
                    sink.add(event)
        for sink in wanting:
            sink.end(stream, stats.events, stats.errors)


def _groups(files: Sequence[CollectedFile], count: int) -> list[Sequence[CollectedFile]]:
    """Contiguous groups of about equal bytes (contiguous: results stay in file order)."""
    if count <= 1 or len(files) <= 1:
        return [files]
    target = sum(file.size for file in files) / count
    groups: list[Sequence[CollectedFile]] = []
    start = 0
    size = 0
    for index, file in enumerate(files):
        size += file.size
        if size >= target and index + 1 < len(files):
            groups.append(files[start : index + 1])
            start, size = index + 1, 0
    groups.append(files[start:])
    return [group for group in groups if group]
