"""
GPU check of the ResNet backbones and the export (run where torchvision and a GPU exist).

    PYTHONPATH=$PWD python experiments/gpu_check_backbone.py --out DIR

1. torchvision.models.resnet18/50(weights=None) with a fixed seed; their state_dict (fc aside)
   loads strictly into vlmad_ros's ResNet, and both give the same feature map on a random input
   (printed: max abs difference; torchvision's net without avgpool/fc).
2. The same state_dict saved as a .pth loads through PlannerConfig.backbone_weights.
3. If tensorrt imports: a planner is exported to ONNX, built into an fp16 engine, and its
   waypoints are compared with PyTorch's (max abs difference in metres).
Only model modules are imported (no rclpy; they need numpy and pyyaml); the TensorRT part also
imports the exporter (pillow, simplejpeg, onnx, onnxscript: pip-install them beside torch) and
reports an error instead of failing when they are missing. Results: DIR/gpu_check_backbone.json.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch


def compare_backbone(name: str, device: torch.device, out_dir: pathlib.Path) -> dict:
    import torchvision
    from vlmad_ros.model import PlannerConfig, PlannerModel
    from vlmad_ros.model.resnet import ResNet
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None).eval().to(device)
    ours = ResNet(name).eval().to(device)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith('fc.')}
    ours.load_state_dict(state, strict=True)
    body = torch.nn.Sequential(*list(ref.children())[:-2])       # drop avgpool, fc
    x = torch.randn(2, 3, 256, 704, device=device)
    with torch.no_grad():
        a, b = body(x), ours(x)
    path = out_dir / f'{name}-torchvision-seed0.pth'
    torch.save(ref.state_dict(), path)                           # fc included, as downloaded
    planner = PlannerModel(PlannerConfig(backbone=name, image_width=704, image_height=256,
                                         backbone_weights=str(path)))
    loaded = planner.image_encoder.body.state_dict()
    same = all(torch.equal(loaded[k].cpu(), v.cpu()) for k, v in state.items())
    return {'feature_shape': list(b.shape), 'max_abs_diff': float((a - b).abs().max()),
            'max_abs_feature': float(a.abs().max()), 'backbone_weights_file_loads': same}


def check_tensorrt(out_dir: pathlib.Path) -> dict:
    try:
        import tensorrt as trt
    except ImportError as err:
        return {'skipped': f'tensorrt not importable: {err}'}
    import numpy as np
    from vlmad_ros.export import example_inputs, export_onnx, ExportedPlanner, rig_calibration
    from vlmad_ros.model import PlannerConfig, PlannerModel
    from vlmad_ros.rig import load_rig
    torch.manual_seed(0)
    cfg = PlannerConfig(backbone='resnet18', image_width=704, image_height=256)
    model, rig = PlannerModel(cfg).eval(), load_rig('nuscenes')
    onnx_path = export_onnx(model, rig, out_dir / 'planner_resnet18_704x256.onnx')
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        return {'error': [str(parser.get_error(i)) for i in range(parser.num_errors)]}
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    inputs = example_inputs(cfg, batch=1)
    for name, arr in inputs.items():
        profile.set_shape(name, arr.shape, arr.shape, arr.shape)
    config.add_optimization_profile(profile)
    t = time.perf_counter()
    engine_bytes = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t
    (out_dir / 'planner_resnet18_704x256_fp16.engine').write_bytes(engine_bytes)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    ctx = engine.create_execution_context()
    dev = torch.device('cuda')
    tensors = {k: torch.from_numpy(v).to(dev) for k, v in inputs.items()}
    for name, tensor in tensors.items():
        ctx.set_input_shape(name, tuple(tensor.shape))
    outs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            outs[name] = torch.empty(tuple(ctx.get_tensor_shape(name)), device=dev)
    for name, tensor in {**tensors, **outs}.items():
        ctx.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.current_stream()
    ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    k, pose = rig_calibration(rig, cfg)
    net = ExportedPlanner(model, k, pose).to(dev)
    with torch.no_grad():
        want = net(*tensors.values())[0]
    times = []
    for _ in range(50):
        t = time.perf_counter()
        ctx.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        times.append(time.perf_counter() - t)
    return {'engine_build_s': round(build_s, 1),
            'max_waypoint_diff_m_fp16_vs_torch_fp32': float((outs['traj'] - want).abs().max()),
            'engine_p50_ms': round(float(np.median(times)) * 1e3, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder for the files and the json')
    args = parser.parse_args(argv)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    import vlmad_ros.model  # noqa: F401
    res = {'torch': torch.__version__, 'device': str(device),
           'gpu': torch.cuda.get_device_name() if device.type == 'cuda' else None,
           'rclpy_imported': 'rclpy' in sys.modules}
    for name in ('resnet18', 'resnet50'):
        res[name] = compare_backbone(name, device, out_dir)
        print(f'{name}: max abs difference of the feature maps {res[name]["max_abs_diff"]:.3g} '
              f'(features up to {res[name]["max_abs_feature"]:.3g}), '
              f'backbone_weights file loads: {res[name]["backbone_weights_file_loads"]}',
              flush=True)
    try:
        res['tensorrt'] = (check_tensorrt(out_dir) if device.type == 'cuda'
                           else {'skipped': 'no GPU'})
    except Exception as err:  # report, do not hide the backbone results
        res['tensorrt'] = {'error': f'{type(err).__name__}: {err}'}
    print('tensorrt:', res['tensorrt'])
    res['rclpy_imported'] = 'rclpy' in sys.modules
    (out_dir / 'gpu_check_backbone.json').write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    ok = all(res[n]['max_abs_diff'] < 1e-3 and res[n]['backbone_weights_file_loads']
             for n in ('resnet18', 'resnet50')) and not res['rclpy_imported']
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
