"""
Launch files through the real launch service, as `ros2 launch` runs them, and what their nodes got.

`python helpers_launch.py FILE name:=value ...` is `ros2 launch` for one file (ros2launch needs
ros2cli, which is not on PyPI): LaunchService + IncludeLaunchDescription with the arguments.
`Launched` starts that as a process and asks the started nodes for their parameters over DDS
(rcl_interfaces/GetParameters), the way `ros2 param get` does.
"""
import os
import signal
import subprocess
import sys
import time


def main(argv) -> int:
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource
    path, pairs = argv[0], [a.split(':=', 1) for a in argv[1:]]
    service = LaunchService(argv=argv[1:], noninteractive=True)
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path), launch_arguments=[(k, v) for k, v in pairs])]))
    return service.run()


class Launched:
    """A launch file running in its own process; stop() ends it with SIGINT, like Ctrl-C."""

    def __init__(self, launch_file, args, env, log_path):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(launch_file),
             *[f'{k}:={v}' for k, v in args.items()]],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        import rclpy
        import rclpy.executors
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node('vlmad_launch_test_client', context=self._context)
        self._executor = rclpy.executors.SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def parameters(self, node_name, names, timeout=90.0):
        """Ask the running node `node_name` (fully qualified) for `names`; dict name -> value."""
        from rcl_interfaces.srv import GetParameters
        from helpers_service import call_until_answered
        from rclpy.parameter import parameter_value_to_python
        client = self.node.create_client(GetParameters, f'{node_name}/get_parameters')
        deadline = time.monotonic() + timeout
        while not client.wait_for_service(timeout_sec=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f'{node_name} never offered its parameters '
                                     f'(launch exit {self.proc.poll()}):\n{self.log()[-3000:]}')

        def wait(future, seconds):
            self._executor.spin_until_future_complete(future, timeout_sec=seconds)
            return future.done()
        values = call_until_answered(client, GetParameters.Request(names=list(names)), wait,
                                     timeout=max(1.0, deadline - time.monotonic())).values
        self.node.destroy_client(client)
        return {n: parameter_value_to_python(v) for n, v in zip(names, values)}

    def stop(self, timeout=40.0) -> int:
        """SIGINT the launch (it forwards it to its nodes); return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def close(self):
        self.stop()
        self._executor.shutdown()
        self.node.destroy_node()
        self._context.try_shutdown()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
