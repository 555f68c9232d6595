"""
rosbag2 files without ROS: our messages in a rosbags typestore, a writer, a reader.

Bags are written in rosbag2 metadata version 8 (Jazzy and newer read it; `ros2 bag play`), MCAP
by default. The definitions stored in the bag for our types are the msg/*.msg texts themselves,
so any tool (mcap-ros2-support, Foxglove, ros2 bag) decodes them.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Dict, Iterable, Iterator, Optional, Tuple

from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

from vlmad_ros.paths import msg_dir
from vlmad_ros.stamps import NS

PACKAGE = 'vlmad_ros'
BAG_VERSION = 8
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# Topics whose publishers are latched (transient local): `ros2 bag play` offers them that way so
# late subscribers (tf2 listeners) still receive them.
LATCHED_TOPICS = frozenset({'/tf_static'})
_NO_TIME = QosTime(sec=0, nsec=0)
LATCHED_QOS = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
                  durability=QosDurability.TRANSIENT_LOCAL, deadline=_NO_TIME,
                  lifespan=_NO_TIME, liveliness=QosLiveliness.AUTOMATIC,
                  liveliness_lease_duration=_NO_TIME, avoid_ros_namespace_conventions=False)


def our_msg_definitions() -> Dict[str, str]:
    """Map 'vlmad_ros/msg/Name' to the .msg file text, for every file in msg/."""
    return {f'{PACKAGE}/msg/{p.stem}': p.read_text() for p in sorted(msg_dir().glob('*.msg'))}


@functools.lru_cache(maxsize=None)
def typestore():
    """Build (once) the ROS 2 typestore, Humble..Kilted wire format, with our messages added."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in our_msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@functools.lru_cache(maxsize=None)
def message_definition(msgtype: str) -> Tuple[str, str]:
    """
    Return the ROS 2 message definition text to store in a bag, and its RIHS01 hash.

    For our own types (and our types nested inside them) the stored text is the .msg file
    itself, comments included, as `ros2 bag record` stores it.
    """
    store = typestore()
    generated, _ = store.generate_msgdef(msgtype, ros_version=2)
    ours = our_msg_definitions()
    separator = '=' * 80 + '\n'
    sections = generated.split(separator)
    fixed = []
    for i, section in enumerate(sections):
        name = msgtype if i == 0 else section.split('\n', 1)[0][len('MSG: '):]
        full = name if '/msg/' in name else name.replace('/', '/msg/', 1)
        if full in ours:
            body = ours[full].rstrip('\n') + '\n'
            section = body if i == 0 else f'MSG: {name}\n{body}'
        fixed.append(section)
    return separator.join(fixed), store.hash_rihs01(msgtype)


def ns_to_stamp(ns: int, time_cls=None):
    """Integer nanoseconds -> builtin_interfaces/Time (rosbags' class unless one is given)."""
    if time_cls is None:
        time_cls = typestore().types['builtin_interfaces/msg/Time']
    sec, nanosec = divmod(int(ns), NS)
    return time_cls(sec=sec, nanosec=nanosec)


def msg_class(msgtype: str):
    """Return the rosbags dataclass for a type name like 'sensor_msgs/msg/CompressedImage'."""
    return typestore().types[msgtype]


class BagWriter:
    """
    A rosbag2 writer that always closes its bag (exceptions, Ctrl-C).

    with BagWriter(out_dir) as bag:
        bag.add_topic('/odom', 'nav_msgs/msg/Odometry')
        bag.write('/odom', msg, stamp_ns)
    """

    def __init__(self, path, storage: str = 'mcap'):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise FileExistsError(f'bag already exists: {self.path}')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._connections = {}
        self._store = typestore()
        self._open = False

    def __enter__(self) -> 'BagWriter':
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:  # noqa: A003 (the file-like name)
        self._writer.open()
        self._open = True

    def add_topic(self, topic: str, msgtype: str, latched: Optional[bool] = None) -> None:
        """Declare a topic; latched (default: topic in LATCHED_TOPICS) records transient local."""
        if topic in self._connections:
            if self._connections[topic].msgtype != msgtype:
                raise ValueError(f'{topic} already has type {self._connections[topic].msgtype}')
            return
        msgdef, rihs01 = message_definition(msgtype)
        if latched is None:
            latched = topic in LATCHED_TOPICS
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef, rihs01=rihs01,
            offered_qos_profiles=[LATCHED_QOS] if latched else ())

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            self.add_topic(topic, msg.__msgtype__)
            conn = self._connections[topic]
        self._writer.write(conn, int(stamp_ns), self._store.serialize_cdr(msg, conn.msgtype))

    def write_raw(self, topic: str, data: bytes, stamp_ns: int) -> None:
        """Write already serialized CDR (copying messages between bags)."""
        self._writer.write(self._connections[topic], int(stamp_ns), data)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()


def bag_paths(inputs: Iterable) -> list:
    """Expand files/folders into bag paths: rosbag2 folders (metadata.yaml) and .mcap files."""
    found = []
    for item in inputs:
        path = pathlib.Path(item)
        if not path.exists():
            raise FileNotFoundError(f'no such bag or folder: {path}')
        if path.is_file() or (path / 'metadata.yaml').is_file():
            found.append(path)
            continue
        subs = sorted(p.parent for p in path.rglob('metadata.yaml'))
        loose = sorted(p for p in path.rglob('*.mcap')
                       if not (p.parent / 'metadata.yaml').exists())
        if not subs and not loose:
            raise FileNotFoundError(f'no rosbag2 folders or .mcap files under {path}')
        found.extend(subs + loose)
    return found


def read_messages(path, topics: Optional[Iterable[str]] = None,
                  raw: bool = False) -> Iterator[Tuple[str, int, object]]:
    """
    Yield (topic, log_time_ns, message) from a rosbag2 folder or a single .mcap file.

    A bag whose writer crashed (no metadata.yaml, or an MCAP without its summary) still
    yields every complete message it holds. With raw=True the message is the CDR bytes.
    """
    path = pathlib.Path(path)
    wanted = set(topics) if topics is not None else None
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        store = typestore()
        with Reader(path) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            _register_unknown(store, ((c.msgtype, c.msgdef.data) for c in conns if c.msgdef))
            for conn, stamp, data in reader.messages(connections=conns):
                msg = data if raw else store.deserialize_cdr(data, conn.msgtype)
                yield conn.topic, stamp, msg
        return
    files = [path] if path.is_file() else sorted(path.glob('*.mcap'))
    if not files:
        raise FileNotFoundError(f'{path} is neither a rosbag2 folder nor an .mcap file')
    for file in files:
        yield from _read_mcap(file, wanted, raw)


def _read_mcap(file: pathlib.Path, wanted, raw: bool):
    """
    Read an MCAP file record by record (no metadata.yaml: a single file or a crashed recording).

    Streaming, not the summary index, so a file cut mid-write yields every complete chunk.
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    store = typestore()
    schemas, channels = {}, {}
    with open(file, 'rb') as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                    _register_unknown(store, [(record.name, record.data.decode())])
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    channel = channels[record.channel_id]
                    if wanted is not None and channel.topic not in wanted:
                        continue
                    msgtype = schemas[channel.schema_id].name
                    msg = record.data if raw else store.deserialize_cdr(record.data, msgtype)
                    yield channel.topic, record.log_time, msg
        except (McapError, EOFError):
            return  # truncated file: everything complete before the break was yielded


def _register_unknown(store, defs) -> None:
    """Register message types found in a bag that the typestore does not know."""
    for msgtype, msgdef in defs:
        if msgtype in store.types or not msgdef:
            continue
        try:
            store.register(get_types_from_msg(msgdef, msgtype))
        except Exception:  # a definition we cannot parse stays unknown; reading it raises later
            pass
