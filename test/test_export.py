"""`vlmad export` to ONNX and the planner's onnxruntime backend, against the torch backend."""
import sys

import helpers_planner as hp
import numpy as np
import pytest
from vlmad_ros import cli
from vlmad_ros import types as T
from vlmad_ros.planner import Planner
from vlmad_ros.rig import load_rig
from vlmad_ros.types import EgoState, Observation

SEC = 1_000_000_000


def _save(path, **cfg_kw):
    import torch
    from vlmad_ros.model import PlannerConfig, PlannerModel, save_checkpoint
    torch.manual_seed(0)
    base = {'image_width': 96, 'image_height': 56, 'backbone_channels': (8, 16, 32),
            'backbone_blocks': (0, 0, 1), 'd_model': 32, 'num_heads': 2, 'ffn_dim': 64,
            'decoder_layers': 1}
    cfg = PlannerConfig(**{**base, **cfg_kw})
    model = PlannerModel(cfg)
    for m in model.modules():     # non-trivial batch-norm statistics, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(path, model, rig=load_rig('nuscenes'))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Checkpoints and their ONNX files: the cnn with a zoom view, and a ResNet-18."""
    d = tmp_path_factory.mktemp('export')
    out = {}
    for name, kw in (('cnn', {'zoom': 3.0}),
                     ('resnet18', {'backbone': 'resnet18', 'image_width': 64,
                                   'image_height': 64})):
        pt = _save(d / f'{name}.pt', **kw)
        onnx_path = d / f'{name}.onnx'
        assert cli.main(['export', str(pt), '--onnx', str(onnx_path)]) == 0
        out[name] = (str(pt), str(onnx_path))
    return out


def observations(rig, n, seed=0):
    """Random camera sets at the rig's resolution (where the exported calibration is exact)."""
    rng = np.random.default_rng(seed)
    return [Observation(rig=rig, command=i % 3,
                        images=[rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8)
                                for c in rig.cameras],
                        ego=EgoState(float(rng.uniform(0, 12)), float(rng.uniform(-0.3, 0.3)),
                                     0.5))
            for i in range(n)]


@pytest.mark.parametrize('name', ['cnn', 'resnet18'])
def test_onnxruntime_plans_like_torch_within_1e4_m(exported, name):
    pt, onnx_path = exported[name]
    torch_planner = Planner.from_options(checkpoint=pt, num_threads=1)
    ort_planner = Planner.from_options(checkpoint=onnx_path, backend='onnxruntime')
    assert ort_planner.config == torch_planner.config
    obs = observations(load_rig('nuscenes'), 3)
    want, got = torch_planner.plan_batch(obs), ort_planner.plan_batch(obs)
    for w, g in zip(want, got):
        assert np.abs(w.xy - g.xy).max() < 1e-4            # every waypoint, metres
        assert np.abs(w.heading - g.heading).max() < 1e-4
    assert np.abs(want[0].xy - want[1].xy).max() > 1e-3    # the inputs matter
    single = ort_planner.plan(obs[2])                      # batch 1 as well (dynamic axis)
    assert np.abs(single.xy - want[2].xy).max() < 1e-4
    assert 'onnxruntime' in ort_planner.describe()


def test_graph_inputs_and_outputs_are_named_and_typed(exported):
    import onnxruntime
    sess = onnxruntime.InferenceSession(exported['cnn'][1], providers=['CPUExecutionProvider'])
    ins = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    outs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    assert ins == {T.IMAGES: ('tensor(uint8)', ['batch', 7, 3, 56, 96]),
                   T.EGO: ('tensor(float)', ['batch', 3]),
                   T.COMMAND: ('tensor(int64)', ['batch'])}
    assert outs == {T.TRAJ: ('tensor(float)', ['batch', 6, 2]),
                    T.HEADING: ('tensor(float)', ['batch', 6]),
                    T.EGO_FEATURE: ('tensor(float)', ['batch', 32])}
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta['vlmad_format'] == '1' and '"zoom": 3.0' in meta['vlmad_config']


def test_backend_errors_name_the_parameter(exported, monkeypatch):
    pt, onnx_path = exported['cnn']
    with pytest.raises(ValueError, match=r'backend: onnxruntime needs checkpoint:=FILE\.onnx'):
        Planner.from_options(checkpoint=pt, backend='onnxruntime')
    with pytest.raises(ValueError, match='backend: must be one of'):
        Planner.from_options(checkpoint=pt, backend='tensorrt')
    with pytest.raises(ValueError, match='^explain: not available with backend onnxruntime'):
        Planner.from_options(checkpoint=onnx_path, backend='onnxruntime', explain=True)
    with pytest.raises(ValueError, match='^checkpoint: .* is not an ONNX file of `vlmad export`'):
        import onnx
        bare = onnx.load(onnx_path)
        del bare.metadata_props[:]
        path = onnx_path.replace('.onnx', '_bare.onnx')
        onnx.save(bare, path)
        Planner.from_options(checkpoint=path, backend='onnxruntime')
    # The graph holds the nuScenes rays: a CARLA camera set is refused, not planned wrongly.
    planner = Planner.from_options(checkpoint=onnx_path, backend='onnxruntime')
    with pytest.raises(ValueError, match='backend: onnxruntime graph .* rig nuscenes'):
        planner.plan(observations(load_rig('carla'), 1)[0])
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)       # as if not installed
    with pytest.raises(ValueError, match='^backend: onnxruntime is not installed'):
        Planner.from_options(checkpoint=onnx_path, backend='onnxruntime')


def test_export_cli_errors(exported, tmp_path, capsys):
    import torch
    from vlmad_ros.model import PlannerConfig, save_checkpoint
    from vlmad_ros.model.planner_model import build_model
    mlp = save_checkpoint(tmp_path / 'mlp.pt', build_model(PlannerConfig(kind='ego_mlp')))
    assert cli.main(['export', str(mlp), '--onnx', str(tmp_path / 'x.onnx'), '--rig',
                     'nuscenes']) == 2
    assert 'only the camera planner exports' in capsys.readouterr().err
    torch.manual_seed(0)
    norig = save_checkpoint(tmp_path / 'norig.pt', build_model(PlannerConfig(
        image_width=64, image_height=32, d_model=32, num_heads=2)))
    assert cli.main(['export', str(norig), '--onnx', str(tmp_path / 'y.onnx')]) == 2
    assert 'carries no rig: give --rig' in capsys.readouterr().err
    assert cli.main(['export', str(norig), '--onnx', str(tmp_path / 'y.onnx'),
                     '--rig', 'carla']) == 0
    assert 'for rig carla' in capsys.readouterr().out


def test_node_plans_with_the_onnxruntime_backend(ros_env, exported):
    pt, onnx_path = exported['cnn']
    err = hp.start_node(ros_env, f'checkpoint:={pt}', 'backend:=onnxruntime').communicate(
        timeout=60)[1]
    assert 'invalid parameter' in err and 'backend: onnxruntime needs checkpoint' in err, err
    proc = hp.start_node(ros_env, f'checkpoint:={onnx_path}', 'backend:=onnxruntime',
                         'reliability:=reliable')
    h = hp.Harness()
    try:
        h.feed_until_path(proc, 50 * SEC)
        path = h.take_paths()[-1]
        assert len(path.poses) == 6
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]
    assert 'onnxruntime' in err       # the start-up line describes the backend
