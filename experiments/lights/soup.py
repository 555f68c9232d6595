#!/usr/bin/env python3
"""
Average the weights of planners fine-tuned from one init (a uniform "model soup").

Seeds of one recipe differ by about 4 driving-score points over the 42 validation episodes
(EXPERIMENTS.md, round 5); fine-tunes that share their init usually stay in one basin, so the
mean of their weights tends to drive like the better seeds without choosing one by the
validation set. BatchNorm running statistics are averaged like the weights (no re-estimation).

Usage: python experiments/lights/soup.py OUT.pt CKPT CKPT [CKPT...]
"""
import sys

import torch

from vlmad_ros.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def average_states(states):
    """Return the element-wise mean of float tensors; integer buffers come from the first."""
    first = states[0]
    if any(set(s) != set(first) for s in states[1:]):
        raise SystemExit('soup: the checkpoints hold different weights (not one architecture)')
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in first.items()}


def main(argv):
    """Average the checkpoints argv[1:] into argv[0] (rig and config from the first)."""
    if len(argv) < 3:
        raise SystemExit(__doc__)
    out, paths = argv[0], argv[1:]
    models = [load_checkpoint(p) for p in paths]
    configs = {repr(m.config.to_dict()) for m in models}
    if len(configs) != 1:
        raise SystemExit('soup: the checkpoints have different model configs')
    soup = models[0]
    soup.load_state_dict(average_states([m.state_dict() for m in models]))
    extra = dict(read_checkpoint(paths[0]).get('extra') or {})
    extra['soup_of'] = [str(p) for p in paths]
    save_checkpoint(out, soup, rig=soup.rig, extra=extra)
    print(f'soup of {len(paths)} checkpoints -> {out}')


if __name__ == '__main__':
    main(sys.argv[1:])
