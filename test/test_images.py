"""Image conversion: every encoding, row padding, JPEG/PNG, and the errors a node counts."""
import io

import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CompressedImage, Image
from vlmad_ros import images
from vlmad_ros.bagschema import msg_class


def _rgb(h=45, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _raw_msg(rgb, encoding, pad=0):
    """Build an Image by hand (not through the code under test), with `pad` bytes per row."""
    order = {'rgb8': [0, 1, 2], 'bgr8': [2, 1, 0], 'rgba8': [0, 1, 2, 3], 'bgra8': [2, 1, 0, 3]}
    if encoding == 'mono8':
        px = rgb[:, :, :1]
    else:
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
        px = rgba[:, :, order[encoding]]
    rows = px.reshape(rgb.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 99, np.uint8)], axis=1)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
@pytest.mark.parametrize('pad', [0, 5])
def test_raw_encodings_round_trip(encoding, pad):
    rgb = _rgb()
    out = images.image_to_rgb(_raw_msg(rgb, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_mono8_replicates_to_three_channels():
    rgb = _rgb()
    out = images.image_to_rgb(_raw_msg(rgb, 'mono8', pad=3))
    np.testing.assert_array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_publish_direction_round_trips(encoding):
    rgb = _rgb()
    msg = images.rgb_to_image_msg(rgb, encoding)
    assert isinstance(msg, Image) and msg.encoding == encoding
    np.testing.assert_array_equal(images.image_to_rgb(msg), rgb)


def test_rosbags_messages_convert_too():
    rgb = _rgb()
    bag_image = msg_class('sensor_msgs/msg/Image')
    header = msg_class('std_msgs/msg/Header')(
        stamp=msg_class('builtin_interfaces/msg/Time')(sec=0, nanosec=0), frame_id='cam')
    msg = images.rgb_to_image_msg(
        rgb, 'bgra8', msg=bag_image(header=header, height=0, width=0, encoding='',
                                    is_bigendian=0, step=0, data=np.zeros(0, np.uint8)))
    assert isinstance(msg.data, np.ndarray)
    np.testing.assert_array_equal(images.image_to_rgb(msg), rgb)


def test_jpeg_round_trip_is_close():
    rgb = np.kron(_rgb(9, 16), np.ones((10, 10, 1), np.uint8))  # smooth enough for JPEG
    msg = images.rgb_to_compressed_msg(rgb, quality=95)
    assert isinstance(msg, CompressedImage) and msg.format == 'jpeg'
    out = images.compressed_to_rgb(msg)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 6


def test_jpeg_reduced_size_decode_uses_dct_scaling():
    rgb = np.zeros((900, 1600, 3), np.uint8)
    rgb[:, 800:] = (200, 30, 30)
    data = images.encode_jpeg(rgb)
    small = images.decode_jpeg(data, min_size=(400, 225))
    assert small.shape == (225, 400, 3)          # 1/4 scale, exactly the requested minimum
    bigger = images.decode_jpeg(data, min_size=(401, 226))
    assert bigger.shape == (338, 600, 3)         # next DCT scale (3/8) not smaller
    assert abs(int(small[100, 300, 0]) - 200) < 8 and small[100, 100, 0] < 8


def test_png_decodes():
    rgb = _rgb()
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='PNG')
    msg = CompressedImage(format='png')
    msg.data = buf.getvalue()
    np.testing.assert_array_equal(images.compressed_to_rgb(msg), rgb)


def test_resize_to_model_resolution():
    out = images.resize_rgb(_rgb(900, 1600), (224, 128))
    assert out.shape == (128, 224, 3) and out.dtype == np.uint8


@pytest.mark.parametrize('mutate, reason', [
    (lambda m: setattr(m, 'encoding', '16UC1'), 'unsupported_encoding'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'bad_length'),
    (lambda m: setattr(m, 'step', 3), 'bad_step'),
    (lambda m: setattr(m, 'height', 0), 'bad_size'),
])
def test_raw_errors_are_specific(mutate, reason):
    msg = _raw_msg(_rgb(), 'rgb8')
    mutate(msg)
    with pytest.raises(images.ImageConversionError) as err:
        images.image_to_rgb(msg)
    assert err.value.reason == reason


@pytest.mark.parametrize('data, fmt, reason', [
    (b'\xff\xd8\xff\xe0 this is not really a jpeg', 'jpeg', 'corrupt_jpeg'),
    (b'\x89PNG\r\n\x1a\n broken', 'png', 'corrupt_png'),
    (b'', 'jpeg', 'empty'),
    (b'GIF89a....', 'gif', 'unsupported_format'),
])
def test_compressed_errors_are_specific(data, fmt, reason):
    msg = CompressedImage(format=fmt)
    msg.data = data
    with pytest.raises(images.ImageConversionError) as err:
        images.compressed_to_rgb(msg)
    assert err.value.reason == reason


def test_truncated_jpeg_is_an_error_not_a_crash():
    data = images.encode_jpeg(_rgb(90, 160))
    msg = CompressedImage(format='jpeg')
    msg.data = data[: len(data) // 3]
    with pytest.raises(images.ImageConversionError) as err:
        images.compressed_to_rgb(msg)
    assert err.value.reason == 'corrupt_jpeg'


def test_cv_bridge_parity():
    cv_bridge = pytest.importorskip('cv_bridge')
    bridge = cv_bridge.CvBridge()
    rgb = _rgb()
    for encoding in ('rgb8', 'bgr8', 'bgra8', 'rgba8', 'mono8'):
        msg = _raw_msg(rgb, encoding, pad=4)
        ours = images.image_to_rgb(msg)
        theirs = bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
        np.testing.assert_array_equal(ours, theirs)
