"""
Launch arguments that change a node's parameters only where the user set them (launch/*.py).

A node's parameters, a later layer winning: its installed config/<node>.yaml, the launch file's
own settings (CARLA topics, the demo's episodes, ...), the user's `params_file`, and last the
arguments set on the command line. An argument left at its default '' passes nothing, so it
cannot silently undo `params_file`. A set one is converted to the parameter's type here: a
string stays a string (`model:=1.5` is '1.5', where launch_ros would parse it as YAML).

Why the layers are two rewritten files around params_file, keyed '/**' and '/**/<node>': rcl
applies a parameter from the key (node pattern) first seen in the --params-file list before one
from a key first seen later, whatever the file order (test_launch_args.py shows it). The first
file, config + settings under '/**', is seen first, so any key of params_file beats it; the set
arguments under '/**/<node>' are either that same key in a later file or a key seen after.
"""
import dataclasses
import os
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

CONFIG_FILES = {'planner_node': 'planner.yaml', 'annotator_node': 'annotator.yaml',
                'path_follower': 'path_follower.yaml', 'sim_node': 'sim.yaml',
                'carla_control_node': 'carla_control.yaml',
                'carla_odometry_node': 'carla_odometry.yaml'}
COMMON = (('params_file', 'parameter file applied on top of the installed config/<node>.yaml '
                          '(keys select the node, e.g. /**/planner_node)'),
          ('namespace', 'namespace of the nodes (and of their relative topics)'))
_TRUE, _FALSE = ('true', 'yes', 'on', '1'), ('false', 'no', 'off', '0')


@dataclasses.dataclass(frozen=True)
class Arg:
    """A launch argument that sets the parameter of its name, typed, on `nodes` (all if ())."""

    name: str
    kind: type
    description: str
    nodes: Tuple[str, ...] = ()


def convert(arg: Arg, text: str):
    """Launch argument text -> the parameter's type; a bad value names the argument."""
    if arg.kind is str:
        return text
    if arg.kind is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(f'launch argument {arg.name}:={text!r} is not true or false')
    try:
        return arg.kind(text)
    except ValueError:
        raise ValueError(f'launch argument {arg.name}:={text!r} is not '
                         f'{"an" if arg.kind is int else "a"} {arg.kind.__name__}') from None


def set_values(args: Sequence[Arg], texts: Mapping[str, str], node: str) -> Dict[str, object]:
    """Typed values of the arguments for `node` that the user set (text not '')."""
    return {a.name: convert(a, texts[a.name]) for a in args
            if texts.get(a.name, '') != '' and (not a.nodes or node in a.nodes)}


def parameter_file(key: str, values: Mapping[str, object]) -> str:
    """Write `values` as a parameter file for the nodes matching `key`; return its path."""
    fd, path = tempfile.mkstemp(prefix='vlmad_launch_', suffix='.yaml')
    with os.fdopen(fd, 'w') as f:
        yaml.safe_dump({key: {'ros__parameters': dict(values)}}, f, default_flow_style=False)
    return path


def config_parameters(path: str, node: str) -> Dict[str, object]:
    """Read the parameters of `node` from an installed config file (its section for it)."""
    with open(path) as f:
        sections = yaml.safe_load(f) or {}
    out = {}
    for key, section in sections.items():
        if key.rstrip('/').split('/')[-1] in (node, '**'):
            out.update(section.get('ros__parameters', {}))
    return out


def layered(node: str, config: Mapping[str, object], settings: Optional[Mapping[str, object]],
            params_file: str, values: Mapping[str, object]) -> List[str]:
    """Return the --params-file list of one node, lowest priority first (module docstring)."""
    files = [parameter_file('/**', {**config, **(settings or {})})]
    if params_file:
        files.append(params_file)
    if values:
        files.append(parameter_file(f'/**/{node}', values))
    return files


def declare(args: Sequence[Arg], extra: Sequence[Tuple[str, str, str]] = ()):
    """Declare params_file, namespace, `args` (default '') and `extra` (name, default, text)."""
    from launch.actions import DeclareLaunchArgument
    out = [DeclareLaunchArgument(name, default_value='', description=text)
           for name, text in COMMON]
    out += [DeclareLaunchArgument(a.name, default_value='',
                                  description=f'{a.description} (empty: from the parameter files)')
            for a in args]
    out += [DeclareLaunchArgument(name, default_value=default, description=text)
            for name, default, text in extra]
    return out


def texts(context, names) -> Dict[str, str]:
    """Return the launch configuration values of `names` ('' where not declared)."""
    return {n: context.launch_configurations.get(n, '') for n in names}


def node_parameters(context, node: str, args: Sequence[Arg],
                    settings: Optional[Mapping[str, object]] = None) -> List[str]:
    """Parameter files for `node` of this launch: config, settings, params_file, set arguments."""
    from launch_ros.substitutions import FindPackageShare
    share = FindPackageShare('vlmad_ros').perform(context)
    given = texts(context, ['params_file'] + [a.name for a in args])
    config = config_parameters(os.path.join(share, 'config', CONFIG_FILES[node]), node)
    return layered(node, config, settings, given['params_file'], set_values(args, given, node))
