"""
ResNet-18/34/50 in plain torch, with torchvision's parameter names.

torchvision does not import beside this machine's CPU torch, and users have its ImageNet
checkpoints (`resnet18-f37072fd.pth` in ~/.cache/torch/hub/checkpoints) on disk: with the same
module names (conv1, bn1, layer1.0.conv1, ..., layerN.0.downsample.0/1) those files load here as
they are. The classifier (`fc.*`) is not built: the planner reads the stride-32 feature map.
Architecture: He et al. 2016, with the stride on the 3x3 conv of the bottleneck ("v1.5"), as
torchvision builds it.
"""
from __future__ import annotations

import pathlib
from typing import Dict, Optional, Type, Union

import torch
from torch import nn

# name -> (block, blocks per stage). Stage widths are 64, 128, 256, 512 (x4 for Bottleneck).
RESNETS = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet34': ('basic', (3, 4, 6, 3)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
}
STRIDE = 32          # conv1 (2) * maxpool (2) * layer2..4 (2 each)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and the identity (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 down, 3x3 (strided), 1x1 up by 4, and the identity (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """The ResNet body without pooling head and classifier: (N, 3, H, W) -> stride-32 features."""

    def __init__(self, name: str):
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f'unknown ResNet {name!r} (known: {sorted(RESNETS)})')
        kind, layers = RESNETS[name]
        block: Type[Union[BasicBlock, Bottleneck]] = (
            BasicBlock if kind == 'basic' else Bottleneck)
        self.name = name
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f'layer{i + 1}', self._stage(block, planes, n, 1 if i == 0 else 2))
        self._init_weights()

    def _stage(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        c_in, c_out = self.out_channels, planes * block.expansion
        downsample = None
        if stride != 1 or c_in != c_out:
            downsample = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))
        blocks = [block(c_in, planes, stride, downsample)]
        blocks += [block(c_out, planes) for _ in range(n - 1)]
        self.out_channels = c_out
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        """He init for convs, BN at identity; zero the last BN of each block (trains faster)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """Read a state_dict from a .pth file (plain, or under 'state_dict' / 'model')."""
    from vlmad_ros.model.checkpoint import load_weights_only
    path = pathlib.Path(path).expanduser()
    state = load_weights_only(path, 'backbone_weights')
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f'backbone_weights: {path} does not hold a state_dict of tensors')
    return state


def load_matching(module: nn.Module, path, ignore_prefixes=()) -> None:
    """
    Load a state_dict file into module with strict key and shape matching.

    Keys under ignore_prefixes (a classifier) are dropped first; any other difference is a
    ValueError naming the file and the first mismatches, so a ResNet-50 file given to a
    ResNet-18 says so instead of loading half.
    """
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        what = getattr(module, 'name', type(module).__name__)
        raise ValueError(f'backbone_weights: {path} does not match the {what} backbone: '
                         f'{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected '
                         f'{unexpected[:5]}, {len(shapes)} shape mismatches {shapes[:3]}')
    module.load_state_dict(state, strict=True)
