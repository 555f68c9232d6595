"""
Resume after a kill: an append-only JSON-lines journal of finished work, next to the outputs.

The first line holds the settings of the run; a rerun with other settings is refused, naming
them, since mixing would corrupt the output. Each later line is one finished item, written whole,
flushed and fsync'd before the next item starts, so a kill loses at most the line being written:
a torn last line is cut off on open. `vlmad annotate` journals each keyframe's answer
(teacher/journal.py); `vlmad synth` and `vlmad convert-nuscenes` journal each finished bag
(BagJournal). Bags themselves appear whole or not at all (bagschema.BagWriter).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Dict, List, Optional

JOURNAL_VERSION = 1


class JournalMismatch(ValueError):
    """The journal was written with other settings: resuming would mix two datasets."""


class JsonlJournal:
    """Header line + one JSON object per finished item; durable appends."""

    def __init__(self, path, header: dict):
        self.path = pathlib.Path(path)
        # Through JSON once, so tuples compare equal to the lists read back.
        self.header = json.loads(json.dumps(dict(header, journal=JOURNAL_VERSION)))
        self.rows: List[dict] = []
        self.resumed = False      # the journal existed: an earlier run of these settings
        self._file = None

    def start(self) -> 'JsonlJournal':
        """Load what an earlier run finished (cutting a torn tail), then open for appending."""
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_header()
        self._file = open(self.path, 'a')
        return self

    def _write_header(self) -> None:
        with open(self.path, 'w') as f:
            f.write(json.dumps(self.header) + '\n')
            f.flush()
            os.fsync(f.fileno())

    def _load(self) -> None:
        with open(self.path, 'rb') as f:
            data = f.read()
        end = data.rfind(b'\n') + 1
        if end < len(data):  # a line cut by a kill: drop it so the next append starts clean
            with open(self.path, 'r+b') as f:
                f.truncate(end)
        lines = data[:end].decode('utf-8', 'replace').splitlines()
        if not lines:
            self._write_header()
            return
        try:
            found = json.loads(lines[0])
        except ValueError:
            found = {}
        was, now = _flat(found), _flat(self.header)
        differ = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        if differ:
            raise JournalMismatch(
                f'{self.path} was written with other settings ('
                + ', '.join(f'{k}={was.get(k)!r}, now {now.get(k)!r}' for k in differ)
                + '): use the same settings to resume, or another output folder')
        self.resumed = True
        for line in lines[1:]:
            try:
                self.rows.append(json.loads(line))
            except ValueError:
                continue  # a corrupt line: that item is done again

    def append(self, row: dict) -> None:
        """Record one finished item durably (on disk before returning)."""
        self._file.write(json.dumps(row) + '\n')
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _flat(d, prefix: str = '') -> dict:
    """{'config': {'width': 96}} -> {'config.width': 96}: a mismatch names the setting."""
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else ()):
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


class BagJournal(JsonlJournal):
    """
    The bags one command finished in its output folder (one row per bag: name and summary).

    A bag is done when it is journaled and its folder exists. The journal line follows the
    bag's atomic rename, so a kill between the two leaves a complete bag without its line:
    when the journal existed before this run that bag is this command's own and is written
    again (overwrite); without a journal a bag of that name is someone else's and refused.
    """

    def __init__(self, out_dir, name: str, header: dict):
        self.out_dir = pathlib.Path(out_dir)
        super().__init__(self.out_dir / f'{name}.journal.jsonl', header)

    def finished(self) -> Dict[str, dict]:
        """Bag name -> its journaled summary, for the bags that exist."""
        return {r['bag']: r.get('info', {}) for r in self.rows
                if isinstance(r, dict) and 'bag' in r and (self.out_dir / r['bag']).exists()}

    def info(self, bag: str) -> Optional[dict]:
        return self.finished().get(bag)

    def overwrite(self, bag: str) -> bool:
        """Whether writing `bag` must replace a folder of that name; FileExistsError if foreign."""
        if not (self.out_dir / bag).exists():
            return False
        if self.resumed:
            return True
        raise FileExistsError(f'{self.out_dir / bag} already exists and {self.path.name} does '
                              'not list it: choose another output folder')

    def add(self, bag: str, info: dict) -> None:
        self.append({'bag': bag, 'info': info})


def write_text_atomic(path, text: str) -> None:
    """Write a small file whole or not at all (a temporary file renamed over it)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
