#!/usr/bin/env python3
"""
A planner from the mean of several fine-tunes (EXPERIMENTS.md, "Round 10": it did not work).

    experiments/soup/average.py A.pt B.pt ... --out SOUP.pt

Fine-tunes of one initial checkpoint that differ only in their seed (or data order) tend to
lie in one basin of the loss, and the mean of their weights often plans better than any of
them at no inference cost (a "uniform model soup", Wortsman et al., 2022). The checkpoints must
describe the same model: kind, config, normalisation and rig are compared and every difference
is named. Floating-point tensors (weights, batch-norm statistics) are averaged; integer buffers
(batch-norm step counters) come from the first file. The VLM-AD action head is averaged when
every file carries one and left out otherwise.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any, Dict, Sequence

import torch

from vlmad_ros.model.checkpoint import (ACTION_HEAD_KEY, CheckpointError, load_action_head,
                                        load_checkpoint, read_checkpoint, write_checkpoint)

MUST_AGREE = ('kind', 'config', 'normalization', 'rig')


def mean_state(states: Sequence[Dict[str, torch.Tensor]], names: Sequence[str]
               ) -> Dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors (in float64); other tensors from the first."""
    first = states[0]
    for state, name in zip(states[1:], names[1:]):
        if set(state) != set(first):
            differ = sorted(set(state) ^ set(first))
            raise CheckpointError(f'{name}: other weights than {names[0]}: {differ[:8]}')
        shapes = [k for k in first if state[k].shape != first[k].shape]
        if shapes:
            raise CheckpointError(f'{name}: other shapes than {names[0]} in {shapes[:8]}')
    out = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = sum(s[key].double() for s in states)
            out[key] = (total / len(states)).to(tensor.dtype)
        else:
            out[key] = tensor.clone()
    return out


def average_checkpoints(paths: Sequence[pathlib.Path]) -> Dict[str, Any]:
    """Build the mean model's checkpoint dict; CheckpointError names the file that differs."""
    if len(paths) < 2:
        raise CheckpointError(f'averaging needs at least two checkpoints, got {len(paths)}')
    names = [str(p) for p in paths]
    ckpts = [read_checkpoint(p) for p in paths]
    for ckpt, name in zip(ckpts[1:], names[1:]):
        differ = [k for k in MUST_AGREE if ckpt.get(k) != ckpts[0].get(k)]
        if differ:
            raise CheckpointError(f'{name} describes another model than {names[0]}: '
                                  f'{", ".join(differ)} differ')
    soup = dict(ckpts[0])
    soup['state_dict'] = mean_state([c['state_dict'] for c in ckpts], names)
    soup['extra'] = {'averaged_from': [{'file': pathlib.Path(n).name,
                                        'seed': (c.get('extra') or {}).get('seed')}
                                       for n, c in zip(names, ckpts)]}
    heads = [c.get(ACTION_HEAD_KEY) for c in ckpts]
    soup.pop(ACTION_HEAD_KEY, None)
    if all(h is not None for h in heads):
        for head, name in zip(heads[1:], names[1:]):
            if head['config'] != heads[0]['config'] or head['labels'] != heads[0]['labels']:
                raise CheckpointError(f"{name}: its action head differs from {names[0]}'s")
        soup[ACTION_HEAD_KEY] = dict(heads[0],
                                     state_dict=mean_state([h['state_dict'] for h in heads],
                                                           names))
    return soup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoints', nargs='+', type=pathlib.Path,
                        help='planner checkpoints of one model (e.g. seeds of one recipe)')
    parser.add_argument('--out', required=True, type=pathlib.Path,
                        help='where the averaged checkpoint is written')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    try:
        soup = average_checkpoints(args.checkpoints)
        write_checkpoint(args.out, soup)
        load_checkpoint(args.out)                    # what the planner will load, checked now
        load_action_head(args.out)
    except CheckpointError as err:
        print(f'average.py: {err}', file=sys.stderr)
        return 2
    head = 'with' if ACTION_HEAD_KEY in soup else 'without'
    print(f'wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints, {head} an '
          'action head')
    return 0


if __name__ == '__main__':
    sys.exit(main())
