"""Answer validation: a bad answer never becomes a label; prompts list the exact label sets."""
import json

import pytest
from vlmad_ros import labels
from vlmad_ros.teacher.parse import AnswerError, parse_answer
from vlmad_ros.teacher.prompt import available_prompts, DEFAULT_PROMPT, load_prompt

GOOD = {'current_action': 'Driving straight.', 'future_action': 'It will stop.',
        'reasoning': 'The light is red.', 'control_action': 'stop', 'turn_action': 'none',
        'lane_action': 'none'}


def test_good_answers_plain_fenced_and_with_prose():
    for text in (json.dumps(GOOD), '```json\n' + json.dumps(GOOD) + '\n```',
                 'Here you go: ' + json.dumps(GOOD) + ' Hope it helps.'):
        ans = parse_answer(text)
        assert ans.texts == ('Driving straight.', 'It will stop.', 'The light is red.')
        assert ans.labels == (2, 3, 4)
    # Case and spacing of labels are normalised, nothing else.
    ans = parse_answer(json.dumps(dict(GOOD, control_action='  Move   Slowly ')))
    assert ans.labels[0] == labels.CONTROL_LABELS.index('move slowly')


@pytest.mark.parametrize('text, reason', [
    ('{"current_action": "x", ', 'invalid_json'),
    ('', 'empty_answer'),
    ('[1, 2]', 'not_an_object'),
    (json.dumps({k: v for k, v in GOOD.items() if k != 'reasoning'}), 'missing_key'),
    (json.dumps(dict(GOOD, control_action='accelerate')), 'invalid_label'),
    (json.dumps(dict(GOOD, turn_action='left')), 'invalid_label'),
    (json.dumps(dict(GOOD, lane_action=3)), 'invalid_label'),
    (json.dumps(dict(GOOD, reasoning='   ')), 'empty_text'),
    (json.dumps(dict(GOOD, future_action=None)), 'empty_text'),
    (json.dumps(dict(GOOD, reasoning='x' * 401)), 'text_too_long'),
])
def test_bad_answers_raise_with_a_reason(text, reason):
    with pytest.raises(AnswerError) as err:
        parse_answer(text)
    assert err.value.reason == reason


def test_prompt_lists_the_exact_label_sets_and_keys():
    assert DEFAULT_PROMPT in available_prompts()
    prompt = load_prompt()
    for values in labels.LABEL_SETS.values():
        for v in values:
            assert f'"{v}"' in prompt.user
    for key in labels.TEXT_FIELDS + tuple(labels.LABEL_SETS):
        assert key in prompt.user
    assert 'red line' in prompt.user and 'red line' in prompt.system
    assert 'invalid_label: boom' in prompt.repair('invalid_label: boom')
    assert len(prompt.fingerprint) == 16
    with pytest.raises(ValueError, match='prompt_version'):
        load_prompt('no-such-version')
