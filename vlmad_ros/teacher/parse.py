"""
Validate a teacher's answer before it can become a record: a bad answer never becomes a label.

Accepted: one JSON object (optionally inside a ``` fence or surrounded by prose) with the six
keys; the three texts non-empty and at most `max_chars` long; the three labels copied from their
sets (case and spacing are normalised, nothing else). Anything else raises AnswerError with a
short `reason` used for the repair request and for counting failures.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Tuple

from vlmad_ros import labels
from vlmad_ros.teacher.prompt import MAX_TEXT_CHARS

ANSWER_KEYS = labels.TEXT_FIELDS + tuple(labels.LABEL_SETS)
_FENCE = re.compile(r'```(?:json)?\s*(.*?)```', re.DOTALL | re.IGNORECASE)


class AnswerError(ValueError):
    """An unusable answer; `reason` is a short key (invalid_json, invalid_label, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Answer:
    """A validated answer: three texts and three label indices."""

    texts: Tuple[str, str, str]
    labels: Tuple[int, int, int]


def _load_object(text: str) -> dict:
    text = text.strip()
    candidates = [text]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    if '{' in text and '}' in text:
        candidates.append(text[text.index('{'):text.rindex('}') + 1])
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            raise AnswerError('not_an_object', f'expected a JSON object, got {type(obj).__name__}')
        return obj
    snippet = text[:80].replace('\n', ' ')
    raise AnswerError('invalid_json', f'no JSON object could be parsed from {snippet!r}')


def parse_answer(text: str, max_chars: int = MAX_TEXT_CHARS) -> Answer:
    """Parse and validate; raises AnswerError naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise AnswerError('empty_answer', 'the answer was empty')
    obj = _load_object(text)
    missing = [k for k in ANSWER_KEYS if k not in obj]
    if missing:
        raise AnswerError('missing_key', f'missing keys {missing}')
    texts = []
    for key in labels.TEXT_FIELDS:
        value = obj[key]
        if not isinstance(value, str) or not value.strip():
            raise AnswerError('empty_text', f'{key} must be a non-empty string')
        value = ' '.join(value.split())
        if len(value) > max_chars:
            raise AnswerError('text_too_long',
                              f'{key} has {len(value)} characters (max {max_chars})')
        texts.append(value)
    idx = []
    for key in labels.LABEL_SETS:
        value = obj[key]
        if not isinstance(value, str):
            raise AnswerError('invalid_label', f'{key} must be a string, got {value!r}')
        try:
            idx.append(labels.label_index(key, value))
        except ValueError as err:
            raise AnswerError('invalid_label', str(err)) from None
    return Answer(texts=tuple(texts), labels=tuple(idx))


def answer_schema() -> dict:
    """
    JSON schema of an answer, for servers that constrain decoding to it.

    Only keywords OpenAI's strict mode accepts (no maxLength): lengths stay the parser's job,
    which checks every answer whether or not the server honoured the schema.
    """
    props = {k: {'type': 'string'} for k in labels.TEXT_FIELDS}
    props.update({k: {'type': 'string', 'enum': list(v)} for k, v in labels.LABEL_SETS.items()})
    return {'type': 'object', 'properties': props, 'required': list(ANSWER_KEYS),
            'additionalProperties': False}
