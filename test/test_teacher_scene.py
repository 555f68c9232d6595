"""Ground truth for the rule teacher: lights (map frame) and agents moved into base_link."""
import helpers_annotate as h
import numpy as np
import pytest
from vlmad_ros.data.geometry import quat_wxyz_from_yaw
from vlmad_ros.data.reader import read_samples
from vlmad_ros.teacher.base import LightState, ObjectClass
from vlmad_ros.teacher.cli import reader_config, teacher_input
from vlmad_ros.teacher.rule import RuleTeacher
from vlmad_ros.teacher.scene import objects_from_msg, read_scene_index

NS = 1_000_000_000


def test_red_light_in_map_frame_explains_the_stop(tmp_path):
    pose = h.brake_to_stop()               # stops at x = 18.7 m
    h.write_drive_bag(tmp_path / 'bag', pose, duration_s=6.0, red_light_at=23.0)
    scene = read_scene_index(tmp_path / 'bag')
    t0 = h.START_NS + 2 * NS
    objects, lights = scene.at(t0)
    (light,) = lights
    ego_x = pose(2.0)[0]
    assert light.state == LightState.RED
    assert light.stop_line[0] == pytest.approx((23.0 - ego_x, -2.0), abs=0.05)
    (car,) = objects
    assert car.object_class == ObjectClass.CAR and car.x == pytest.approx(25.0, abs=0.5)
    samples = list(read_samples(tmp_path / 'bag', reader_config('CAM_FRONT')))
    assert samples
    results = [RuleTeacher().annotate(teacher_input(s, 'CAM_FRONT', scene, 160))
               for s in samples]
    stops = [r for r in results if r.control_action == 2]
    assert stops and all('red' in r.reasoning for r in stops)


def test_objects_in_the_odometry_frame_are_moved_into_base_link():
    from vlmad_ros.data import rosmsgs
    # Ego at (10, 5) heading +90 deg; a car 20 m north of it, driving north at 3 m/s.
    car = rosmsgs.ground_truth_object('c', 0, (10.0, 25.0, 0.0), quat_wxyz_from_yaw(np.pi / 2),
                                      (4.0, 2.0, 1.5), (0.0, 3.0, 0.0))
    msg = rosmsgs.ground_truth_objects(0, 'map', [car])
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    world_to_base = np.linalg.inv(np.array([[c, -s, 10.0], [s, c, 5.0], [0, 0, 1]]))
    (obj,) = objects_from_msg(msg, world_to_base)
    assert (obj.x, obj.y) == pytest.approx((20.0, 0.0), abs=1e-6)
    assert (obj.vx, obj.vy) == pytest.approx((3.0, 0.0), abs=1e-6)
    assert obj.yaw == pytest.approx(0.0, abs=1e-6)


def test_keyframes_labelled_past_a_lamp_change_are_flagged(tmp_path):
    # Red at 23 m until 4 s, then green; the expert's stop does not matter, the lamp does.
    h.write_drive_bag(tmp_path / 'bag', h.brake_to_stop(), duration_s=8.0, red_light_at=23.0,
                      green_at_s=4.0)
    samples = {round((s.stamp_ns - h.START_NS) / NS, 1): s
               for s in read_samples(tmp_path / 'bag', reader_config('CAM_FRONT'))}
    flags = {t: s.light_change for t, s in samples.items()}
    assert [samples[t].light_state for t in (0.0, 3.5, 4.0, 5.0)] == [
        LightState.RED, LightState.RED, LightState.GREEN, LightState.GREEN]
    # Red now and green within 3 s: flagged; green already, or red for the next 3 s: not.
    assert [flags[t] for t in (1.5, 2.0, 2.5, 3.0, 3.5)] == [True] * 5
    assert [flags[t] for t in (0.0, 0.5, 4.0, 4.5, 5.0)] == [False] * 5
    # A lamp that stays red is no change.
    h.write_drive_bag(tmp_path / 'red', h.brake_to_stop(), duration_s=8.0, red_light_at=23.0)
    assert not any(s.light_change for s in read_samples(tmp_path / 'red',
                                                        reader_config('CAM_FRONT')))
