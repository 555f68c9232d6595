"""
sensor_msgs/Image and CompressedImage <-> numpy RGB uint8 (H, W, 3).

Our own cv_bridge for the encodings drivers and bags carry (DESIGN.md section 3: cv_bridge breaks
on NumPy 2 and is not installable here). JPEG goes through libjpeg-turbo (simplejpeg), which can
decode at a reduced DCT scale: a 1600x900 frame decodes straight to 400x225 for a fraction of the
full cost. Works on rclpy messages and on rosbags message objects alike (duck-typed).
"""
from __future__ import annotations

import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image as PILImage
import simplejpeg

# encoding -> (channels, channel order to take for RGB)
_RAW_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),    # CARLA ROS bridge cameras
    'mono8': (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


class ImageConversionError(ValueError):
    """A message that cannot become an image; `reason` is a short key for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def _buffer(data) -> np.ndarray:
    """View message `data` (bytes, array.array, list, ndarray) as flat uint8, no copy."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    try:  # array.array('B') from rclpy
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    return _buffer(data).tobytes()


def image_to_rgb(msg) -> np.ndarray:
    """Convert a sensor_msgs/Image to (H, W, 3) uint8 RGB, honouring `step` row padding."""
    encoding = str(msg.encoding).lower()
    if encoding not in _RAW_ENCODINGS:
        raise ImageConversionError(
            'unsupported_encoding',
            f'{msg.encoding!r} (supported: {", ".join(SUPPORTED_ENCODINGS)})')
    channels, order = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError('bad_size', f'{width}x{height}')
    if step < width * channels:
        raise ImageConversionError('bad_step',
                                   f'step {step} < width {width} x {channels} channels')
    buf = _buffer(msg.data)
    if buf.size != step * height:
        raise ImageConversionError(
            'bad_length', f'{buf.size} bytes for {height} rows of step {step} ({step * height})')
    rows = buf.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows[:, :, list(order)])


def decode_jpeg(data, min_size: Optional[Tuple[int, int]] = None,
                exact: bool = False) -> np.ndarray:
    """
    Decode JPEG bytes to RGB; with min_size=(w, h), at the smallest DCT scale still >= it.

    exact: the accurate IDCT and chroma upsampling (as nvJPEG) instead of the fast ones.
    """
    raw = _as_bytes(data)
    min_w, min_h = min_size if min_size else (0, 0)
    try:
        return simplejpeg.decode_jpeg(raw, colorspace='rgb', min_width=int(min_w),
                                      min_height=int(min_h), fastdct=not exact,
                                      fastupsample=not exact)
    except (ValueError, RuntimeError) as err:  # simplejpeg raises ValueError on corrupt data
        raise ImageConversionError('corrupt_jpeg', str(err)) from None


def _decode_png(data) -> np.ndarray:
    try:
        with PILImage.open(io.BytesIO(_as_bytes(data))) as img:
            return np.asarray(img.convert('RGB'))
    except Exception as err:  # PIL raises many types on corrupt input
        raise ImageConversionError('corrupt_png', str(err)) from None


def _compressed_kind(msg) -> str:
    """'png' or 'jpeg' for a CompressedImage, from `format` or the data's magic bytes."""
    fmt = str(msg.format).lower()
    if len(msg.data) == 0:
        raise ImageConversionError('empty', 'CompressedImage with no data')
    head = _buffer(msg.data)[:8].tobytes()
    if 'png' in fmt or head.startswith(b'\x89PNG'):
        return 'png'
    if 'jpeg' in fmt or 'jpg' in fmt or head.startswith(b'\xff\xd8') or fmt == '':
        return 'jpeg'
    raise ImageConversionError('unsupported_format', f'{msg.format!r} (supported: jpeg, png)')


def compressed_to_rgb(msg, min_size: Optional[Tuple[int, int]] = None,
                      exact: bool = False) -> np.ndarray:
    """
    Convert a sensor_msgs/CompressedImage (jpeg or png) to (H, W, 3) uint8 RGB.

    `format` follows image_transport: 'jpeg', 'png', or 'rgb8; jpeg compressed bgr8'.
    min_size and exact apply to JPEG (decode_jpeg).
    """
    if _compressed_kind(msg) == 'png':
        return _decode_png(msg.data)
    return decode_jpeg(msg.data, min_size, exact)


def jpeg_data(msg) -> Optional[np.ndarray]:
    """
    Return the JPEG bytes of a CompressedImage as flat uint8 (no copy); None for PNG or raw.

    For decoders of their own (the GPU one); raises ImageConversionError like compressed_to_rgb.
    """
    if not hasattr(msg, 'format') or _compressed_kind(msg) != 'jpeg':
        return None
    return _buffer(msg.data)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 (H, W, 3) to JPEG bytes (4:2:0, like camera drivers and nuScenes)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return simplejpeg.encode_jpeg(rgb, quality=int(quality), colorspace='rgb',
                                  colorsubsampling='420')


def resize_rgb(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize to (width, height); area-like filtering when shrinking (PIL reduce + bilinear)."""
    width, height = int(size[0]), int(size[1])
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    img = PILImage.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.resize((width, height), PILImage.BILINEAR, reducing_gap=2.0))


def rgb_to_image_msg(rgb: np.ndarray, encoding: str = 'rgb8', msg=None):
    """Fill (or create) a sensor_msgs/Image from RGB. `msg` may be any Image class instance."""
    encoding = encoding.lower()
    if encoding not in _RAW_ENCODINGS:
        raise ImageConversionError('unsupported_encoding', encoding)
    rgb = np.asarray(rgb, dtype=np.uint8)
    if encoding == 'mono8':
        px = (rgb.astype(np.uint16) @ np.array([77, 150, 29], np.uint16) >> 8).astype(np.uint8)
        px = px[:, :, None]
    else:
        channels, order = _RAW_ENCODINGS[encoding]
        px = rgb[:, :, list(order)]
        if channels == 4:
            px = np.concatenate([px, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if msg is None:
        from sensor_msgs.msg import Image
        msg = Image()
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(px.shape[1] * px.shape[2])
    msg.data = np.ascontiguousarray(px).tobytes() if _wants_bytes(msg) else px.reshape(-1)
    return msg


def rgb_to_compressed_msg(rgb: np.ndarray, quality: int = 90, msg=None):
    """Fill (or create) a sensor_msgs/CompressedImage (jpeg) from RGB."""
    if msg is None:
        from sensor_msgs.msg import CompressedImage
        msg = CompressedImage()
    msg.format = 'jpeg'
    data = encode_jpeg(rgb, quality)
    msg.data = data if _wants_bytes(msg) else np.frombuffer(data, np.uint8)
    return msg


def _wants_bytes(msg) -> bool:
    """Tell whether msg is an rclpy message (uint8[] as bytes) or a rosbags one (ndarray)."""
    return type(msg).__module__.startswith(('sensor_msgs', 'rclpy')) or hasattr(msg, 'SLOT_TYPES')
