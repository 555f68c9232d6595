"""
On-disk answer cache: re-running the annotator over the same frames costs nothing.

Key = sha256(model, prompt version, prompt fingerprint, sha256 of the exact JPEG sent). The
JPEG already contains the red path, so a different trajectory is a different key. One small
JSON file per answer, written atomically (temp file + rename): concurrent workers and a killed
run never leave a torn entry; an unreadable entry counts as a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Optional


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return pathlib.Path(base) / 'vlmad_ros' / 'teacher'


def cache_key(image_sha256: str, prompt_version: str, prompt_fingerprint: str, model: str) -> str:
    text = '\n'.join(('vlmad-answer-v1', model, prompt_version, prompt_fingerprint, image_sha256))
    return hashlib.sha256(text.encode()).hexdigest()


class AnswerCache:
    """get/put JSON-able dicts by key under `root`."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> pathlib.Path:
        return self.root / key[:2] / f'{key}.json'

    def get(self, key: str) -> Optional[dict]:
        try:
            with open(self._path(key)) as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.tmp-', suffix='.json')
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(value, f)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
