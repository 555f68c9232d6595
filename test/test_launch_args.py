"""vlmad_ros.launch_args: typed launch arguments and the parameter layers, read by real rcl."""
import pytest
from vlmad_ros.launch_args import Arg, config_parameters, convert, layered, set_values
from vlmad_ros.paths import config_dir
import yaml

ARGS = [Arg('model', str, ''), Arg('explain', bool, ''), Arg('rate', float, ''),
        Arg('depth', int, ''), Arg('checkpoint', str, '', ('planner_node',))]


def test_set_arguments_are_typed_and_unset_ones_pass_nothing():
    texts = {'model': '1.5', 'explain': 'True', 'rate': '2', 'depth': '', 'checkpoint': 'a.pt'}
    assert set_values(ARGS, texts, 'planner_node') == {
        'model': '1.5', 'explain': True, 'rate': 2.0, 'checkpoint': 'a.pt'}
    assert set_values(ARGS, texts, 'path_follower') == {'model': '1.5', 'explain': True,
                                                        'rate': 2.0}
    assert set_values(ARGS, {}, 'planner_node') == {}
    assert isinstance(set_values(ARGS, texts, 'x')['rate'], float)


@pytest.mark.parametrize('arg,text,message', [
    (Arg('explain', bool, ''), 'maybe', "explain:='maybe' is not true or false"),
    (Arg('rate', float, ''), 'fast', "rate:='fast' is not a float"),
    (Arg('depth', int, ''), '2.5', "depth:='2.5' is not an int"),
])
def test_a_bad_value_names_the_argument(arg, text, message):
    with pytest.raises(ValueError, match=message):
        convert(arg, text)


def test_config_parameters_reads_the_node_section():
    planner = config_parameters(str(config_dir() / 'planner.yaml'), 'planner_node')
    assert planner['rig'] == 'nuscenes' and planner['slop'] == 0.05
    follower = config_parameters(str(config_dir() / 'path_follower.yaml'), 'path_follower')
    assert 'pid' in follower   # nested parameters stay nested (rcl flattens them to pid.*)


@pytest.mark.ros
@pytest.mark.parametrize('user_key', ['/**', '/**/n', '/n', 'n', '/*'])
def test_layers_win_in_order_whatever_key_params_file_uses(user_key, tmp_path):
    """Real rcl reads the layered files: config < settings < params_file < set arguments."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.node import Node
    user = tmp_path / 'user.yaml'
    user.write_text(yaml.safe_dump({user_key: {'ros__parameters': {
        'from_user': 'user', 'over_settings': 'user', 'over_config': 'user',
        'over_all': 'user'}}}))
    config = {'from_config': 'config', 'over_config': 'config', 'over_settings': 'config',
              'over_all': 'config'}
    settings = {'over_settings': 'settings', 'over_all': 'settings'}
    files = layered('n', config, settings, str(user), {'over_all': 'argument'})
    args = ['--ros-args'] + [a for f in files for a in ('--params-file', f)]
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    try:
        node = Node('n', context=context, automatically_declare_parameters_from_overrides=True)
        got = {p.name: p.value for p in node.get_parameters(
            ['from_config', 'over_config', 'over_settings', 'over_all', 'from_user'])}
        node.destroy_node()
    finally:
        context.try_shutdown()
    assert got == {'from_config': 'config', 'over_config': 'user', 'over_settings': 'user',
                   'over_all': 'argument', 'from_user': 'user'}


@pytest.mark.ros
def test_rcl_orders_keys_by_first_sight_not_by_file(tmp_path):
    """Why layered() keys its files as it does: a later file does not simply win in rcl."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.node import Node
    files = []
    for i, key in enumerate(['/n', '/**', '/n']):
        files.append(tmp_path / f'{i}.yaml')
        files[-1].write_text(yaml.safe_dump({key: {'ros__parameters': {'x': i}}}))
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(files[1]), '--params-file',
                     str(files[2])], context=context)
    try:
        node = Node('n', context=context, automatically_declare_parameters_from_overrides=True)
        later_file_wins = node.get_parameter('x').value
        node.destroy_node()
    finally:
        context.try_shutdown()
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', *[a for f in files for a in ('--params-file', str(f))]],
               context=context)
    try:
        node = Node('n', context=context, automatically_declare_parameters_from_overrides=True)
        first_seen_key_loses = node.get_parameter('x').value
        node.destroy_node()
    finally:
        context.try_shutdown()
    assert later_file_wins == 2            # '/**' then '/n': the later file wins ...
    assert first_seen_key_loses == 1       # ... unless '/n' was seen before '/**'
