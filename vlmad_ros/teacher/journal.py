"""
The resume journal: one JSON line per finished keyframe, next to the output bag.

A run that is killed (Ctrl-C, SIGKILL, a lost machine) keeps every answer it finished; the
next run reads the journal, skips those keyframes and appends the rest. Each line is written
whole and flushed before the next keyframe is taken, so a kill loses at most the line being
written: a torn last line is cut off on open. Records are keyed by the keyframe stamp, so a
keyframe is never recorded twice. The output bag is written from the journal only when a bag
is complete, into a temporary folder renamed at the end: there is never a half-written bag.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Dict

from vlmad_ros.teacher.base import TeacherResult

JOURNAL_VERSION = 1


class JournalMismatch(ValueError):
    """The journal was written by another teacher/prompt: mixing them would corrupt the bag."""


class Journal:
    """Append-only record of finished keyframes for one output bag."""

    def __init__(self, path, header: dict):
        self.path = pathlib.Path(path)
        self.header = dict(header, journal=JOURNAL_VERSION)
        self.records: Dict[int, TeacherResult] = {}
        self._file = None

    def start(self) -> 'Journal':
        """Load what an earlier run finished (cutting a torn tail), then open for appending."""
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, 'w') as f:
                f.write(json.dumps(self.header) + '\n')
        self._file = open(self.path, 'a')
        return self

    def _load(self) -> None:
        with open(self.path, 'rb') as f:
            data = f.read()
        end = data.rfind(b'\n') + 1
        if end < len(data):  # a line cut by a kill: drop it so the next append starts clean
            with open(self.path, 'r+b') as f:
                f.truncate(end)
        lines = data[:end].decode('utf-8', 'replace').splitlines()
        if not lines:
            with open(self.path, 'w') as f:
                f.write(json.dumps(self.header) + '\n')
            return
        found = json.loads(lines[0])
        for key in ('teacher', 'prompt_version', 'input'):
            if found.get(key) != self.header.get(key):
                raise JournalMismatch(
                    f'{self.path} was written with {key}={found.get(key)!r}, this run has '
                    f'{self.header.get(key)!r}: use the same settings to resume, or delete it')
        for line in lines[1:]:
            try:
                row = json.loads(line)
                self.records[int(row['stamp_ns'])] = TeacherResult.from_dict(row['result'])
            except (ValueError, KeyError, TypeError):
                continue  # a corrupt line is annotated again

    def add(self, stamp_ns: int, result: TeacherResult) -> None:
        """Record one finished keyframe durably (flushed to the OS before returning)."""
        if stamp_ns in self.records:
            return
        line = json.dumps({'stamp_ns': int(stamp_ns), 'result': result.to_dict()})
        self._file.write(line + '\n')
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[int(stamp_ns)] = result

    def __contains__(self, stamp_ns: int) -> bool:
        return int(stamp_ns) in self.records

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
