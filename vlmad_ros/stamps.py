"""
ROS time stamps (builtin_interfaces/Time: sec, nanosec) <-> integer nanoseconds or seconds.

One implementation for nodes, bags and tests; duck-typed, so rclpy's, rosbags' and the CDR
readers' Time objects all work. Integer nanoseconds are the lossless form: floats only for
controllers that need seconds.
"""
NS = 1_000_000_000


def to_ns(stamp) -> int:
    """Return a Time as integer nanoseconds."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def to_s(stamp) -> float:
    """Return a Time in seconds (float)."""
    return stamp.sec + stamp.nanosec * 1e-9


def write_ns(stamp, ns: int) -> None:
    """Set a Time in place from integer nanoseconds (nanosec always in [0, 1e9))."""
    stamp.sec, stamp.nanosec = divmod(int(ns), NS)


def write_s(stamp, t: float) -> None:
    """Set a Time in place from seconds, rounded to the nanosecond."""
    write_ns(stamp, int(round(t * 1e9)))
