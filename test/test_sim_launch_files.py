"""
Launch files of the closed loop, CARLA and replay, checked without the launch packages.

`launch`/`launch_ros` are not on PyPI (make setup installs them from ../shared/ros-wheels when
present; test_launch_files.py then runs every launch file through the launch service). Here,
everywhere: every file compiles, every node it starts is an installed executable of this
package, and every parameter it passes or lets an argument set is one those nodes have.
"""
import ast
import importlib.util
import pathlib

import pytest

from vlmad_ros import carla, demo
from vlmad_ros.paths import share_dir

LAUNCH_FILES = ('carla.launch.py', 'nuscenes_replay.launch.py', 'demo.launch.py')


def launch_path(name):
    return share_dir() / 'launch' / name


def node_executables(path):
    """Collect the executables of the Node(...) actions in a launch file (string constants)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node':
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(kw.get('package'), ast.Constant) and kw['package'].value == 'vlmad_ros':
                exe = kw.get('executable')
                out.add(exe.value if isinstance(exe, ast.Constant) else '<computed>')
    return out


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_launch_file_compiles_and_starts_installed_nodes(name):
    path = launch_path(name)
    compile(path.read_text(), str(path), 'exec')
    lib = share_dir().parent.parent / 'lib' / 'vlmad_ros'
    exes = node_executables(path)
    if name == 'demo.launch.py':
        assert exes == {'<computed>'}   # one Node per name of demo.node_parameters
        exes = set(demo.node_parameters('out', '', True, ['cruise:1'], 1.0))
    assert exes, f'{name} starts no vlmad_ros node'
    for exe in exes:
        assert (lib / exe).is_file(), f'{name} starts {exe}, which is not installed'


def test_parameters_passed_by_the_launch_functions_exist():
    """Every parameter name the launch files pass is one the node's code declares."""
    import vlmad_ros
    pkg = pathlib.Path(vlmad_ros.__file__).parent
    sources = {
        'planner_node': (pkg / 'nodes' / 'planner_node.py').read_text(),
        'path_follower': ((pkg / 'control' / 'follower.py').read_text()
                          + (pkg / 'nodes' / 'path_follower_node.py').read_text()),
        'sim_node': (pkg / 'nodes' / 'sim_node.py').read_text(),
    }
    demo_params = demo.node_parameters('o', '', True, ['cruise:1'], 1.0)
    passed = {'planner_node': [carla.planner_parameters(), demo_params['planner_node']],
              'path_follower': [carla.follower_parameters(), demo_params['path_follower']],
              'sim_node': [demo_params['sim_node']]}
    for node, param_sets in passed.items():
        for params in param_sets:
            for name in params:
                if name == 'use_sim_time':   # declared by rclpy itself
                    continue
                # A PARAMETERS key ('name': ...) or a config dataclass field (    name: type).
                assert f"'{name}'" in sources[node] or f'    {name}:' in sources[node], \
                    f'{node} declares no parameter {name}'


def launch_arguments(path):
    """(name, nodes) of the Arg(...) calls of a launch file; nodes () means every node."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Arg':
            nodes = node.args[3] if len(node.args) > 3 else None
            out.append((node.args[0].value,
                        tuple(e.value for e in nodes.elts) if nodes is not None else ()))
    return out


@pytest.mark.parametrize('name', sorted(p.name for p in (share_dir() / 'launch').glob('*.py')))
def test_launch_arguments_name_parameters_of_their_nodes(name):
    """An argument that sets a parameter the node's config does not have would do nothing."""
    from vlmad_ros.launch_args import CONFIG_FILES, config_parameters
    path = launch_path(name)
    started = [e for e in node_executables(path) if e in CONFIG_FILES]
    if name == 'demo.launch.py':
        started = list(demo.node_parameters('out', '', True, ['cruise:1'], 1.0))
    args = launch_arguments(path)
    assert args, f'{name} declares no parameter arguments'
    for arg, nodes in args:
        for node in nodes or started:
            params = config_parameters(str(share_dir() / 'config' / CONFIG_FILES[node]), node)
            assert arg == 'use_sim_time' or arg in params, \
                f'{name}: argument {arg} is no parameter of {node} ({CONFIG_FILES[node]})'


@pytest.mark.parametrize('name', LAUNCH_FILES)
def test_launch_description_builds_where_launch_exists(name):
    pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI; make setup installs it '
                                             'from ../shared/ros-wheels (see README.md)')
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), launch_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities
