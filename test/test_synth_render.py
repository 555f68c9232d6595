"""The six-camera renderer: projection matches the rig, clipping, depth order, lights, looks."""
import math

import numpy as np
import pytest
from vlmad_ros.rig import load_rig
from vlmad_ros.synth.render import (
    _boxes_to_parts, make_style, Parts, RenderConfig, Renderer, SceneRenderer)
from vlmad_ros.synth.scenarios import make_world, SceneConfig
from vlmad_ros.synth.town import GREEN, RED

W, H = 320, 180
EMPTY = SceneConfig(scenario='cruise', n_vehicles=0, n_parked=0, n_pedestrians=0)


@pytest.fixture(scope='module')
def scene():
    world = make_world(np.random.default_rng(0), EMPTY)
    rig = load_rig('nuscenes').scaled(W, H)
    renderer = SceneRenderer(world.town, rig, make_style(np.random.default_rng(1)))
    return world, rig, renderer


def marker(boxes_map, colours) -> Parts:
    """Unshaded boxes (cx, cy, z0, yaw, l, w, h) in the map frame, one object each."""
    boxes = np.asarray(boxes_map, float).reshape(-1, 7)
    n = len(boxes)
    obj = (np.c_[boxes[:, 0], boxes[:, 1], boxes[:, 2] + boxes[:, 6] / 2],
           boxes[:, [4, 5, 6]] / 2, boxes[:, 3])
    parts = _boxes_to_parts(boxes, np.asarray(colours, float), np.arange(n), np.zeros(n, int),
                            n, obj)
    parts.shade[:] = False
    return parts


def base_to_map(pose, p):
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([x + c * p[0] - s * p[1], y + s * p[0] + c * p[1], p[2]])


def test_a_known_3d_point_lands_on_its_projected_pixel_in_every_camera(scene):
    world, rig, renderer = scene
    pose = (world.ego.x, world.ego.y, world.ego.yaw)
    for k, cam in enumerate(rig.cameras):
        # A point 9 m out, off the optical axis, expressed in base_link.
        p_base = (cam.T_base_cam @ np.array([1.1, -0.6, 9.0, 1.0]))[:3]
        uv, depth = cam.project(p_base[None])
        (u, v), depth = uv[0], depth[0]
        assert depth == pytest.approx(9.0)
        p_map = base_to_map(pose, p_base)
        box = (p_map[0], p_map[1], p_map[2] - 0.4, 0.0, 0.8, 0.8, 0.8)
        img = renderer.render_camera(k, pose, marker([box], [(255, 0, 255)]))
        assert tuple(img[int(v), int(u)]) == (255, 0, 255), cam.name
        # The painted region matches the projected box corners (within a pixel).
        corners = []
        for dx in (-0.4, 0.4):
            for dy in (-0.4, 0.4):
                for dz in (-0.4, 0.4):
                    q = p_map + np.array([dx, dy, dz])
                    c, s = math.cos(pose[2]), math.sin(pose[2])
                    rel = q[:2] - np.array(pose[:2])
                    corners.append((c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], q[2]))
        uv = cam.project(np.array(corners))[0]
        ys, xs = np.nonzero(np.all(img == (255, 0, 255), axis=-1))
        assert abs(xs.min() - uv[:, 0].min()) <= 1.5 and abs(xs.max() - uv[:, 0].max()) <= 1.5
        assert abs(ys.min() - uv[:, 1].min()) <= 1.5 and abs(ys.max() - uv[:, 1].max()) <= 1.5


def test_nearer_objects_hide_farther_ones_whatever_the_list_order(scene):
    world, rig, renderer = scene
    pose = (world.ego.x, world.ego.y, world.ego.yaw)
    cam = rig['CAM_FRONT']
    near = base_to_map(pose, (8.0, 0.0, 0.0))
    far = base_to_map(pose, (16.0, 0.5, 0.0))
    near_box = (near[0], near[1], 0.0, pose[2], 1.0, 1.0, 2.0)
    far_box = (far[0], far[1], 0.0, pose[2], 1.0, 4.0, 4.0)
    u_near, _ = cam.project(np.array([[8.0, 0.0, 1.0]]))
    u_far, _ = cam.project(np.array([[16.0, 2.0, 3.5]]))
    for boxes, cols in (([near_box, far_box], [(255, 0, 0), (0, 0, 255)]),
                        ([far_box, near_box], [(0, 0, 255), (255, 0, 0)])):
        img = renderer.render_camera(0, pose, marker(boxes, cols))
        assert tuple(img[int(u_near[0, 1]), int(u_near[0, 0])]) == (255, 0, 0)
        assert tuple(img[int(u_far[0, 1]), int(u_far[0, 0])]) == (0, 0, 255)


def test_polygons_through_the_camera_plane_are_clipped_not_mirrored(scene):
    world, rig, renderer = scene
    pose = (world.ego.x, world.ego.y, world.ego.yaw)
    k = rig.names.index('CAM_FRONT_LEFT')
    cam = rig.cameras[k]
    # A wall along the car's left side from 5 m behind to 20 m ahead, 2 m to the left.
    centre = base_to_map(pose, (7.5, 2.3, 0.0))
    wall = (centre[0], centre[1], 0.0, pose[2], 25.0, 0.2, 3.0)
    img = renderer.render_camera(k, pose, marker([wall], [(0, 255, 0)]))
    uv, _ = cam.project(np.array([[4.0, 2.2, 1.5]]))
    assert tuple(img[int(uv[0, 1]), int(uv[0, 0])]) == (0, 255, 0)
    # Nothing of it shows in the right front camera (it is behind that camera's view).
    img_r = renderer.render_camera(rig.names.index('CAM_FRONT_RIGHT'), pose,
                                   marker([wall], [(0, 255, 0)]))
    assert not np.any(np.all(img_r == (0, 255, 0), axis=-1))


def test_ground_markings_appear_where_the_map_has_them(scene):
    world, rig, renderer = scene
    town = world.town
    pose = (world.ego.x, world.ego.y, world.ego.yaw)
    img = renderer.render_camera(0, pose, Parts.concat([]))
    cam = rig['CAM_FRONT']
    hits = 0
    for x in np.arange(6.0, 20.0, 0.5):
        for y in np.arange(-6.0, 6.0, 0.25):
            p_map = base_to_map(pose, (x, y, 0.0))
            i = int((p_map[0] - town.tex_origin[0]) / town.tex_res)
            j = int((p_map[1] - town.tex_origin[1]) / town.tex_res)
            patch = town.ground[j - 3:j + 4, i - 3:i + 4]
            if not np.all(patch == patch[0, 0]):
                continue           # only where the class is the same all around the point
            uv, _ = cam.project(np.array([[x, y, 0.0]]))
            u, v = uv[0]
            if not (0 <= u < W and 0 <= v < H):
                continue
            colour = img[int(v), int(u)].astype(float)
            lut = renderer.ground_lut.reshape(-1, 8, 3)[patch[0, 0]].astype(float)
            assert np.min(np.abs(lut - colour).sum(1)) <= 3, (x, y)
            hits += 1
    assert hits > 50


def test_traffic_light_lamps_show_their_state_in_the_front_camera():
    world = make_world(np.random.default_rng(4), SceneConfig(
        scenario='green_light', n_vehicles=0, n_parked=0, n_pedestrians=0))
    rig = load_rig('nuscenes').scaled(800, 450)
    renderer = Renderer(rig)
    node, heading = world.ego.nodes[1], world.ego.pieces[0]['heading']
    sig = world.town.signals[node]
    scene = renderer.scene(world)
    head = next(h for h in scene._heads if h[0] == node and h[1] == heading)
    back = -np.array([[1, 0], [0, 1], [-1, 0], [0, -1]][heading], float)
    cam = rig['CAM_FRONT']

    def lamp_pixel(k):
        face = head[2] + back * 0.3
        p = np.array([face[0], face[1], 4.6 + 1.4 - 0.55 * k])
        x, y, yaw = world.ego.x, world.ego.y, world.ego.yaw
        c, s = math.cos(yaw), math.sin(yaw)
        rel = p[:2] - (x, y)
        uv, depth = cam.project(np.array([[c * rel[0] + s * rel[1],
                                           -s * rel[0] + c * rel[1], p[2]]]))
        u, v = uv[0]
        assert depth[0] > 0 and 0 <= u < 800 and 0 <= v < 450
        return int(v), int(u)

    assert sig.state(heading, world.t) == RED
    img = renderer.render(world)[0]
    assert tuple(img[lamp_pixel(0)]) == (255, 40, 30)        # red lamp lit
    assert tuple(img[lamp_pixel(2)]) == (15, 60, 25)         # green lamp dark
    while sig.state(heading, world.t) != GREEN:
        world.step(0.1)
    img = renderer.render(world)[0]
    assert tuple(img[lamp_pixel(2)]) == (40, 255, 90)
    assert tuple(img[lamp_pixel(0)]) == (70, 20, 20)


def test_renders_are_deterministic_and_looks_vary_per_scene():
    rig = load_rig('nuscenes').scaled(W, H)
    imgs = []
    for seed in (3, 3, 4):
        world = make_world(np.random.default_rng(seed), SceneConfig(scenario='lead_brake'))
        for _ in range(20):
            world.step(0.05)
        imgs.append(Renderer(rig).render(world))
    assert all(np.array_equal(a, b) for a, b in zip(imgs[0], imgs[1]))
    assert imgs[0][0].shape == (H, W, 3) and imgs[0][0].dtype == np.uint8
    sky0, sky2 = imgs[0][0][0].mean(0), imgs[2][0][0].mean(0)
    assert not np.allclose(sky0, sky2, atol=2)
    with pytest.raises(ValueError, match='near'):
        RenderConfig(near=0.0)
