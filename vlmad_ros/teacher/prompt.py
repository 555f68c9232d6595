"""
Versioned prompt texts (prompts/<version>.{system,user,repair}.txt) with the label sets filled in.

The label sets are inserted from vlmad_ros.labels, so the prompt always lists exactly the values
the parser accepts. `fingerprint` hashes the rendered texts: the cache key uses it, so an edited
prompt never reuses answers given to the old one even if the version was not bumped.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib

from vlmad_ros import labels

PROMPT_DIR = pathlib.Path(__file__).resolve().parent / 'prompts'
DEFAULT_PROMPT = 'vlmad-v1'
MAX_TEXT_CHARS = 400   # longest accepted free-form answer


def _label_list(values) -> str:
    return ', '.join(json.dumps(v) for v in values)


LABEL_FIELDS = {
    'control_labels': _label_list(labels.CONTROL_LABELS),
    'turn_labels': _label_list(labels.TURN_LABELS),
    'lane_labels': _label_list(labels.LANE_LABELS),
}


@dataclasses.dataclass(frozen=True)
class Prompt:
    """The rendered texts of one prompt version."""

    version: str
    system: str
    user: str
    repair_template: str
    max_chars: int = MAX_TEXT_CHARS

    def repair(self, error: str) -> str:
        """Render the follow-up message sent after a malformed answer."""
        return self.repair_template.format(error=error, max_chars=self.max_chars, **LABEL_FIELDS)

    @property
    def fingerprint(self) -> str:
        text = '\0'.join((self.version, self.system, self.user, self.repair_template))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def available_prompts() -> list:
    return sorted(p.name[:-len('.user.txt')] for p in PROMPT_DIR.glob('*.user.txt'))


@functools.lru_cache(maxsize=None)
def load_prompt(version: str = DEFAULT_PROMPT) -> Prompt:
    """Load and render prompts/<version>.*.txt."""
    parts = {}
    for part in ('system', 'user', 'repair'):
        path = PROMPT_DIR / f'{version}.{part}.txt'
        if not path.is_file():
            raise ValueError(f'prompt_version {version!r}: {path.name} not found '
                             f'(available: {available_prompts()})')
        parts[part] = path.read_text().strip()
    return Prompt(version=version, system=parts['system'],
                  user=parts['user'].format(**LABEL_FIELDS), repair_template=parts['repair'])
