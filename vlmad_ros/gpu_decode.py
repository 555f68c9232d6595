"""
A camera set's JPEGs decoded on the GPU in one nvJPEG batch (planner_node `decoder: nvjpeg`).

On a CPU the planner decodes each JPEG with libjpeg-turbo at a reduced DCT scale on a thread
pool (planner.camera_features). On a GPU car that costs more than the model: six 1600x900
frames take tens of milliseconds of CPU. torchvision.io.decode_jpeg decodes a list of JPEGs on
the GPU in one call; the views are then cut, resized and calibrated by the same
planner.camera_views as on the CPU, on (3, H, W) tensors that stay on the GPU up to the model.
torchvision is imported only here, when the decoder is built.
"""
from __future__ import annotations

import types
from typing import List, Sequence, Union

import numpy as np
import torch

from vlmad_ros.images import (compressed_to_rgb, encode_jpeg, image_to_rgb,
                              ImageConversionError, jpeg_data)
from vlmad_ros.planner import camera_views, ImageSizeError, to_chw, ViewSpec
from vlmad_ros.rig import Camera

DECODERS = ('cpu', 'nvjpeg')
DecodeResult = Union[torch.Tensor, ImageConversionError]


class NvJpegDecoder:
    """Decode camera messages to (3, H, W) uint8 tensors on a CUDA device."""

    def __init__(self, device: torch.device):
        if device.type != 'cuda':
            raise ValueError(f'decoder: nvjpeg decodes on the GPU and needs device: cuda, the '
                             f'planner runs on {device}')
        try:
            from torchvision.io import decode_jpeg, ImageReadMode
        except Exception as err:   # not installed, or built for another torch
            raise ValueError('decoder: nvjpeg needs torchvision built for this torch with CUDA '
                             f'({type(err).__name__}: {err}); or use decoder: cpu') from None
        self.device = device
        self._decode_jpeg = decode_jpeg
        self._rgb = ImageReadMode.RGB

    def warm_up(self, width: int = 1600, height: int = 900) -> None:
        """Decode one grey frame: nvJPEG's handles and buffers are made on first use."""
        grey = np.full((height, width, 3), 128, np.uint8)
        self.decode([types.SimpleNamespace(format='jpeg', data=encode_jpeg(grey))])
        torch.cuda.synchronize(self.device)

    def decode(self, msgs: Sequence) -> List[DecodeResult]:
        """
        Each message's image on the device, or its ImageConversionError.

        JPEGs go in one batch; PNG and raw Images are decoded on the CPU and copied over.
        """
        out: List[object] = [None] * len(msgs)
        jpegs = {}
        for i, msg in enumerate(msgs):
            try:
                data = jpeg_data(msg)
                if data is not None:
                    jpegs[i] = torch.from_numpy(data.copy())
                    continue
                rgb = compressed_to_rgb(msg) if hasattr(msg, 'format') else image_to_rgb(msg)
                out[i] = to_chw(rgb).to(self.device)
            except ImageConversionError as err:
                out[i] = err
        if jpegs:
            for i, image in zip(jpegs, self._decode_batch(list(jpegs.values()))):
                out[i] = image
        return out

    def _decode_batch(self, datas: List[torch.Tensor]) -> List[DecodeResult]:
        try:
            return list(self._decode_jpeg(datas, mode=self._rgb, device=self.device))
        except torch.cuda.OutOfMemoryError:
            raise                    # the GPU's fault, not the frames'
        except RuntimeError:         # one corrupt frame fails the batch: find which
            return [self._decode_one(d) for d in datas]

    def _decode_one(self, data: torch.Tensor) -> DecodeResult:
        try:
            return self._decode_jpeg(data, mode=self._rgb, device=self.device)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as err:
            return ImageConversionError('corrupt_jpeg', str(err).splitlines()[0])

    def views(self, cameras: Sequence[Camera], msgs: Sequence,
              spec: ViewSpec) -> List[Union[List[tuple], ImageConversionError, ImageSizeError]]:
        """Each camera's views at model resolution (planner.camera_views), or its error."""
        out = []
        for camera, image in zip(cameras, self.decode(msgs)):
            if isinstance(image, ImageConversionError):
                out.append(image)
                continue
            try:
                out.append(camera_views(camera, image, spec))
            except ImageSizeError as err:
                out.append(err)
        return out
