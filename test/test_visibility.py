"""Visibility of lights, pedestrians and cars at the model input (vlmad_ros.synth.visibility)."""
import json
import math
import subprocess

import numpy as np
import pytest
from vlmad_ros.planner import zoom_view
from vlmad_ros.rig import load_rig
from vlmad_ros.synth import visibility as vis
from vlmad_ros.synth.geometry import DIRS, right_of
from vlmad_ros.synth.render import make_style, SceneRenderer
from vlmad_ros.synth.scenarios import make_world, SceneConfig
from vlmad_ros.synth.town import Town, TownConfig


@pytest.fixture(scope='module')
def front():
    return load_rig('nuscenes')['CAM_FRONT']


def _plate_ahead(cam, depth, width, height):
    """Thin upright plate centred on the camera's optical centre, `depth` metres ahead."""
    tx, ty, tz = cam.translation
    return vis.Placement(tx + depth, ty, tz - height / 2, 0.01, width, height)


@pytest.mark.parametrize('size,depth,zoom', [((1600, 900), 20.0, 1.0), ((128, 72), 10.0, 1.0),
                                             ((128, 72), 40.0, 3.0)])
def test_projection_matches_the_pinhole_formula(front, size, depth, zoom):
    """Width = f * size / distance within 1 px; the area is about w * h."""
    cam = vis.zoom_camera(front, *size, zoom)
    r = vis.project_box(cam, _plate_ahead(front, depth, 1.0, 1.5))
    assert abs(r['w'] - cam.fx * 1.0 / depth) < 1.0, r
    assert abs(r['h'] - cam.fy * 1.5 / depth) < 1.0, r
    assert r['area'] == pytest.approx(r['w'] * r['h'], rel=0.05)
    assert abs(r['centres'] - r['area']) <= r['w'] + r['h'] + 2


def test_boxes_outside_the_image_cover_nothing_and_edges_are_clipped(front):
    cam = front.scaled(128, 72)
    assert vis.project_box(cam, vis.Placement(20.0, 40.0, 0.0, 1.0, 1.0, 1.0))['area'] == 0.0
    wide = vis.project_box(cam, _plate_ahead(front, 3.0, 50.0, 1.0))
    assert wide['w'] == pytest.approx(128.0)


@pytest.mark.parametrize('lift', [0.0, 0.05, 0.2])
def test_zoom_camera_is_the_planners_zoom_view(front, lift):
    """The table's zoom view is planner.zoom_view's window resized, within its pixel rounding."""
    window, _ = zoom_view(front, np.zeros((900, 1600, 3), np.uint8), 3.0, lift)
    np.testing.assert_allclose(vis.zoom_camera(front, 128, 72, 3.0, lift).K,
                               window.scaled(128, 72).K, atol=0.3)


def test_only_the_lifted_window_shows_the_lamp_from_the_stop_line(front):
    """Waiting at red (green_light), the centred x3 window has lost the far-side lamp."""
    centred, lifted = (vis.zoom_camera(front, 128, 72, 3.0, lift) for lift in (0.0, 0.05))
    d = vis.GREEN_LIGHT_WAIT
    assert vis.project_object(centred, 'far_lamp', d)['area'] == 0.0
    assert vis.project_object(lifted, 'far_lamp', d)['area'] >= 4 * vis.MIN_AREA
    assert vis.project_object(front.scaled(128, 72), 'far_lamp', d)['area'] < vis.MIN_AREA
    rows = vis.visibility_table({'red_light': {'p90': 51.2, 'max': 54.7}}, vis.input_views())
    assert [r['stat'] for r in rows if r['kind'] == 'far_lamp'] == ['p90', 'max', 'stop line']
    assert vis.light_passes(rows, '128x72 + zoom 3 lift 0.05')
    assert not vis.light_passes(rows, '128x72 + zoom 3')


def test_light_placement_follows_the_renderer():
    """Head positions and sizes in place() are the renderer's (guards against drift)."""
    rng = np.random.default_rng(0)
    town = Town(TownConfig(), rng)
    scene = SceneRenderer(town, load_rig('nuscenes').scaled(32, 18), make_style(rng))
    node, d, far, _, near = scene._heads[0]
    stop, _ = town.stop_line(node, d)           # the centre-line end of the stop line
    for kind, head in (('far_head', far), ('near_head', near)):
        box = vis.place(kind, 0.0, lane=0)
        ahead = box.x_near + box.length / 2 - vis.ego_front_x()
        right = -box.y + town.lane_offset(0)
        assert ahead == pytest.approx(float((head - stop) @ DIRS[d]))
        assert right == pytest.approx(float((head - stop) @ right_of(d)))
    parts = scene._light_parts({}, far)
    head = parts.faces[(parts.group == 0) & (parts.order == 0)].reshape(-1, 3)
    box = vis.place('far_head', 0.0)
    assert head[:, 2].min() == pytest.approx(box.z0)
    assert head[:, 2].max() == pytest.approx(box.z0 + box.height)
    extent = np.ptp(head[:, :2], axis=0)
    assert sorted(extent) == pytest.approx(sorted((box.length, box.width)))


def test_reaction_distances_on_two_seeds_are_finite_and_positive():
    reactions = vis.measure_reactions([0, 1])
    assert set(reactions) == set(vis.SCENARIO_SOURCES)
    for scenario, found in reactions.items():
        assert found, scenario
        for r in found:
            assert math.isfinite(r.distance) and r.distance > 0.0, r
            assert r.distance < 80.0, r
        s = vis.summarise(found, 2)
        assert 0.0 < s['median'] <= s['p90'] <= s['max'], (scenario, s)


def test_ego_constraints_reproduce_the_expert():
    """The minimum of the per-source accelerations is what expert.decide chose."""
    world = make_world(np.random.default_rng(3), SceneConfig(scenario='lead_brake'))
    for _ in range(40):
        a_free, cons = vis.ego_constraints(world, world.obstacles())
        expected = min([a_free] + list(cons.values()))
        world.step(vis.DT)
        assert world.ego.a == pytest.approx(expected, abs=1e-9)


def test_cli_prints_the_table_and_json():
    out = subprocess.run(['vlmad', 'bench', 'visibility', '--seeds', '2'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '| object @ reaction distance | 96x56 |' in out.stdout
    assert '128x72 + zoom 3' in out.stdout
    out = subprocess.run(['vlmad', 'bench', 'visibility', '--seeds', '1', '--json', '-'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result['rows'] and result['min_area'] == vis.MIN_AREA
    cell = result['rows'][0]['cells']['96x56']
    assert {'w', 'h', 'area', 'centres', 'min_side', 'passes'} <= set(cell)
