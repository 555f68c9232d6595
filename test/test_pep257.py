"""ament_pep257 over the package's Python (docstring conventions, ament style)."""
from ament_pep257.main import main
from conftest import REPO_ROOT
import pytest


@pytest.mark.linter
def test_pep257():
    rc = main(argv=[str(REPO_ROOT / p) for p in ('vlmad_ros', 'test', 'launch', 'scripts')])
    assert rc == 0, 'Found code style errors / warnings (see output above)'
