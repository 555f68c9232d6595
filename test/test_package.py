"""The ROS package itself: package.xml, installed layout, launch files, the vlmad CLI."""
import ast
import os
import pathlib
import py_compile
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import REPO_ROOT
import pytest


def _install_prefix() -> pathlib.Path:
    """Find the vlmad_ros install prefix: the ament index (colcon test, env.sh), else install/."""
    try:
        from ament_index_python.packages import get_package_prefix
        return pathlib.Path(get_package_prefix('vlmad_ros'))
    except Exception:   # no ament index on the path: the set-up's colcon install
        return REPO_ROOT / 'install' / 'vlmad_ros'


INSTALL = _install_prefix()
PYTHON_DIR = f'python{sys.version_info.major}.{sys.version_info.minor}'
LAUNCH_FILES = sorted((REPO_ROOT / 'launch').glob('*.launch.py'))


def _package_xml():
    return ET.parse(REPO_ROOT / 'package.xml').getroot()


def test_xmllint_package_xml():
    xmllint = shutil.which('xmllint')
    if xmllint is None:
        pytest.skip('xmllint not installed (Debian libxml2-utils)')
    result = subprocess.run([xmllint, '--noout', str(REPO_ROOT / 'package.xml')],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_package_xml_declares_what_users_need():
    root = _package_xml()
    assert root.get('format') == '3'
    assert root.findtext('export/build_type') == 'ament_cmake'
    assert root.findtext('member_of_group') == 'rosidl_interface_packages'
    deps = {(e.tag, e.text) for e in root}
    for name in ('std_msgs', 'geometry_msgs', 'sensor_msgs', 'nav_msgs', 'diagnostic_msgs',
                 'visualization_msgs'):
        assert ('depend', name) in deps, name
    for tag, name in [('buildtool_depend', 'rosidl_default_generators'),
                      ('exec_depend', 'rosidl_default_runtime'), ('exec_depend', 'rclpy'),
                      ('exec_depend', 'launch'), ('exec_depend', 'launch_ros'),
                      ('test_depend', 'launch_testing'), ('test_depend', 'launch_testing_ros'),
                      ('test_depend', 'ament_flake8'), ('test_depend', 'ament_pep257'),
                      ('test_depend', 'python3-pytest')]:
        assert (tag, name) in deps, (tag, name)


def test_versions_agree():
    from vlmad_ros.version import __version__
    assert _package_xml().findtext('version') == __version__


def test_install_layout():
    site = INSTALL / 'lib' / PYTHON_DIR / 'site-packages' / 'vlmad_ros'
    assert (site / 'msg' / '__init__.py').is_file(), 'generated messages missing'
    assert (INSTALL / 'share' / 'vlmad_ros' / 'package.xml').is_file()
    assert (INSTALL / 'share' / 'vlmad_ros' / 'config' / 'rigs' / 'nuscenes.yaml').is_file()
    for msg in (REPO_ROOT / 'msg').glob('*.msg'):
        assert (site / 'msg_definitions' / msg.name).read_text() == msg.read_text()
    # Every Python source is installed (the generated __init__.py replaces ours).
    for src in (REPO_ROOT / 'vlmad_ros').rglob('*.py'):
        rel = src.relative_to(REPO_ROOT / 'vlmad_ros')
        if str(rel) != '__init__.py':
            assert (site / rel).is_file(), f'{rel} not installed: run make setup'
    assert (REPO_ROOT / 'vlmad_ros' / '__init__.py').read_text().strip() == ''


def test_every_script_is_an_installed_executable():
    for script in (REPO_ROOT / 'scripts').iterdir():
        installed = INSTALL / 'lib' / 'vlmad_ros' / script.name
        assert installed.is_file() and os.access(installed, os.X_OK), script.name


def _launch_executables(path: pathlib.Path):
    """Yield the executables of this package that Node(...) calls in a launch file start."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            kws = {kw.arg: kw.value for kw in node.keywords}
            package, executable = kws.get('package'), kws.get('executable')
            if (isinstance(package, ast.Constant) and package.value == 'vlmad_ros'
                    and isinstance(executable, ast.Constant)):
                yield executable.value


@pytest.mark.parametrize('launch_file', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_its_executables_are_installed(launch_file, tmp_path):
    py_compile.compile(str(launch_file), cfile=str(tmp_path / 'out.pyc'), doraise=True)
    assert 'def generate_launch_description' in launch_file.read_text()
    names = list(_launch_executables(launch_file))
    for name in names:
        assert (INSTALL / 'lib' / 'vlmad_ros' / name).is_file(), f'{name} not installed'
    assert (INSTALL / 'share' / 'vlmad_ros' / 'launch' / launch_file.name).is_file()


def _vlmad(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', *args], capture_output=True,
                          text=True, timeout=120, **kw)


def test_cli_help_and_version():
    result = _vlmad('--help')
    assert result.returncode == 0
    for sub in ('doctor', 'synth', 'annotate', 'train', 'eval', 'bench', 'demo'):
        assert sub in result.stdout
    result = _vlmad('--version')
    assert result.returncode == 0 and 'vlmad_ros' in result.stdout


def test_bench_usage_errors_name_the_option_without_a_traceback():
    for args, name in ((('planner-step', '--checkpoint', '/nonexistent/planner.pt'), 'checkpoint'),
                       (('loader', '--train-device', 'tpu'), '--train-device')):
        result = _vlmad('bench', *args)
        assert result.returncode == 2, result.stderr
        assert f'vlmad bench {args[0]}: error: {name}' in result.stderr
        assert 'Traceback' not in result.stderr


def test_vlmad_executable_is_installed_and_runs():
    exe = INSTALL / 'lib' / 'vlmad_ros' / 'vlmad'
    result = subprocess.run([str(exe), '--version'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_doctor_reports_required_parts(ros_env):
    result = _vlmad('doctor', env=ros_env)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ('rclpy + middleware', 'vlmad_ros messages', 'torch', 'text encoder'):
        assert any(line in row and row.startswith('ok') for row in result.stdout.splitlines())


def test_doctor_names_the_fix_when_messages_are_missing(ros_env, tmp_path):
    """Without the colcon install on the path, doctor fails and says to run make setup."""
    env = dict(ros_env)
    # Keep the sources importable (a copy without generated messages), drop the install.
    shutil.copytree(REPO_ROOT / 'vlmad_ros', tmp_path / 'vlmad_ros')
    (tmp_path / 'vlmad_ros' / 'msg_definitions').mkdir()
    for msg in (REPO_ROOT / 'msg').glob('*.msg'):
        shutil.copy(msg, tmp_path / 'vlmad_ros' / 'msg_definitions')
    env['PYTHONPATH'] = str(tmp_path)
    result = _vlmad('doctor', env=env)
    assert result.returncode != 0
    assert 'MISSING' in result.stdout and 'make setup' in result.stdout
