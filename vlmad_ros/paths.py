"""Where the package's data files are, in a colcon install, a pip install or the source tree."""
import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def msg_dir() -> pathlib.Path:
    """Folder with our .msg files (installed as vlmad_ros/msg_definitions; msg/ in the source)."""
    for cand in (PACKAGE_DIR / 'msg_definitions', PACKAGE_DIR.parent / 'msg'):
        if any(cand.glob('*.msg')):
            return cand
    raise FileNotFoundError('vlmad_ros .msg files not found (is the package installed?)')


def share_dir() -> pathlib.Path:
    """share/vlmad_ros of the colcon install (launch/, config/); the source tree otherwise."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return pathlib.Path(get_package_share_directory('vlmad_ros'))
    except Exception:  # no ament index (pip install or source tree)
        for cand in (PACKAGE_DIR, PACKAGE_DIR.parent):
            if (cand / 'config').is_dir():
                return cand
    raise FileNotFoundError('vlmad_ros share/ folder not found (is the package installed?)')


def config_dir() -> pathlib.Path:
    return share_dir() / 'config'
