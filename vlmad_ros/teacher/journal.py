"""
The annotate resume journal: one JSON line per finished keyframe, next to the output bag.

A run that is killed (Ctrl-C, SIGKILL, a lost machine) keeps every answer it finished; the
next run reads the journal, skips those keyframes and appends the rest (the line format and
its durability are vlmad_ros.resume's). Records are keyed by the keyframe stamp, so a
keyframe is never recorded twice. The output bag is written from the journal only when a bag
is complete, by BagWriter (a `.partial` folder renamed at the end): never a half-written bag.
"""
from __future__ import annotations

from typing import Dict

from vlmad_ros.resume import JournalMismatch, JsonlJournal
from vlmad_ros.teacher.base import TeacherResult

__all__ = ['Journal', 'JournalMismatch']


class Journal(JsonlJournal):
    """Append-only record of finished keyframes for one output bag."""

    def __init__(self, path, header: dict):
        super().__init__(path, header)
        self.records: Dict[int, TeacherResult] = {}

    def start(self) -> 'Journal':
        super().start()
        for row in self.rows:
            try:
                self.records[int(row['stamp_ns'])] = TeacherResult.from_dict(row['result'])
            except (ValueError, KeyError, TypeError):
                continue  # a corrupt line is annotated again
        return self

    def add(self, stamp_ns: int, result: TeacherResult) -> None:
        """Record one finished keyframe durably (on disk before returning)."""
        if stamp_ns in self.records:
            return
        self.append({'stamp_ns': int(stamp_ns), 'result': result.to_dict()})
        self.records[int(stamp_ns)] = result

    def __contains__(self, stamp_ns: int) -> bool:
        return int(stamp_ns) in self.records
