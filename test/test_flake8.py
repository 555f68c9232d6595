"""ament_flake8 over the package's Python (the ROS 2 linter, as ros2/examples run it)."""
from ament_flake8.main import main_with_errors
from conftest import REPO_ROOT
import pytest

PATHS = ['vlmad_ros', 'test', 'launch', 'scripts', 'tools', 'experiments', 'setup.py']


@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=[str(REPO_ROOT / p) for p in PATHS])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
