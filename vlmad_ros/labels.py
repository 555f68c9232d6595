"""
VLM-AD's structured action labels (Q2) and free-form answer fields (Q1).

One set per category, shared by the teacher, the action head and DrivingReasoning.
Index i of a list equals the message constant's value.
"""
from typing import Dict, Tuple

CONTROL_LABELS: Tuple[str, ...] = ('go straight', 'move slowly', 'stop', 'reverse')
TURN_LABELS: Tuple[str, ...] = ('turn left', 'turn right', 'turn around', 'none')
LANE_LABELS: Tuple[str, ...] = ('change lane to the left', 'change lane to the right',
                                'merge into the left lane', 'merge into the right lane', 'none')
LABEL_SETS: Dict[str, Tuple[str, ...]] = {
    'control_action': CONTROL_LABELS,
    'turn_action': TURN_LABELS,
    'lane_action': LANE_LABELS,
}
UNKNOWN = 255  # DrivingReasoning.UNKNOWN

# Q1: the three free-form answers, in the order the alignment head's queries use.
TEXT_FIELDS: Tuple[str, ...] = ('current_action', 'future_action', 'reasoning')


def label_index(category: str, text: str) -> int:
    """Index of a label's text in its set; ValueError naming the allowed values otherwise."""
    labels = LABEL_SETS[category]
    norm = ' '.join(str(text).strip().lower().split())
    if norm not in labels:
        raise ValueError(f'{category}: {text!r} is not one of {list(labels)}')
    return labels.index(norm)


def label_text(category: str, index: int) -> str:
    if index == UNKNOWN:
        return 'unknown'
    return LABEL_SETS[category][index]
