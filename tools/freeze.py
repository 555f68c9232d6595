"""
Print `name==version` for every wheel-installed distribution in this environment.

Plain `pip freeze` also lists the egg-info folders that the ROS wheels carry inside them
(action_msgs, rclpy, ...): those are not installable by name, so they are left out.
"""
import importlib.metadata


def main() -> None:
    pins = set()
    for dist in importlib.metadata.distributions():
        path = getattr(dist, '_path', None)
        if path is None or not str(path).endswith('.dist-info'):
            continue
        name = dist.metadata['Name']
        if name in ('pip', 'setuptools', 'wheel'):
            continue
        pins.add(f'{name}=={dist.version}')
    print('\n'.join(sorted(pins, key=str.lower)))


if __name__ == '__main__':
    main()
