"""
Point the ROS wheels' exported cmake files at this interpreter's include dirs.

The ros-kilted-* wheels were built on a manylinux image; their cmake exports name
/opt/python/cp311-cp311/... for Python and numpy headers. rosidl's Python generator
needs the real ones to compile our message bindings.
"""
import pathlib
import sys
import sysconfig

import numpy

BUILD_NUMPY = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'
BUILD_PYTHON = '/opt/python/cp311-cp311/include/python3.11'


def main(venv: str) -> int:
    replacements = {BUILD_NUMPY: numpy.get_include(),
                    BUILD_PYTHON: sysconfig.get_paths()['include']}
    changed = 0
    for path in pathlib.Path(venv, 'share').rglob('*.cmake'):
        text = path.read_text()
        fixed = text
        for old, new in replacements.items():
            fixed = fixed.replace(old, new)
        if fixed != text:
            path.write_text(fixed)
            changed += 1
    print(f'[setup] cmake path fix: {changed} files point at {sys.executable}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
