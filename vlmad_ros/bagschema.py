"""
rosbag2 files without ROS: our messages in a rosbags typestore, a writer, a reader.

Bags are written in rosbag2 metadata version 8 (Jazzy and newer read it; `ros2 bag play`), MCAP
by default. The definitions stored in the bag for our types are the msg/*.msg texts themselves,
so any tool (mcap-ros2-support, Foxglove, ros2 bag) decodes them.

A *sidecar* is a small bag that adds topics to another bag (its source) instead of copying it:
`vlmad annotate` writes the teacher records that way. Its metadata.yaml `custom_data` names the
source (SIDECAR_SOURCE, relative to the sidecar). Reading a sidecar reads both bags as one:
the source's messages and the sidecar's, merged in log-time order, a sidecar topic replacing
the source's topic of that name (topic_types, read_messages); docs/ANNOTATOR.md.
"""
from __future__ import annotations

import functools
import heapq
import os
import pathlib
import shutil
import struct
import sys
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
# Recorded transient local, so `ros2 bag play` offers them as the nodes expect: the route
# command is latched on both sides (a planner started late still gets the last one).
LATCHED_TOPICS = frozenset({'/tf_static', '/vlmad/command'})
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


PARTIAL_SUFFIX = '.partial'


class BagError(Exception):
    """A bag that cannot be read as it should: the message names the bag and what is wrong."""


def warn(text: str) -> None:
    """One line on stderr (data problems the user must see, not a traceback)."""
    print(f'warning: {text}', file=sys.stderr, flush=True)


def partial_path(path) -> pathlib.Path:
    """Where BagWriter writes `path` until it is closed: `<name>.partial/<name>`."""
    path = pathlib.Path(path)
    return path.parent / f'{path.name}{PARTIAL_SUFFIX}' / path.name


class BagWriter:
    """
    A rosbag2 writer whose bag appears whole or not at all.

    with BagWriter(out_dir) as bag:
        bag.add_topic('/odom', 'nav_msgs/msg/Odometry')
        bag.write('/odom', msg, stamp_ns)

    The bag is written into `<name>.partial/<name>` beside `out_dir`; close() finishes it,
    syncs it to disk and renames it to `out_dir` (one atomic rename), so a killed writer leaves
    only a `.partial` folder (bag_paths skips it, the next writer of that name removes it). An
    exception inside `with` (Ctrl-C, a full disk) removes the partial bag: nothing
    half-written stays. overwrite=True replaces an existing bag, once the new one is complete.
    """

    def __init__(self, path, storage: str = 'mcap', overwrite: bool = False,
                 custom_data: Optional[Dict[str, str]] = None):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.path = pathlib.Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f'bag already exists: {self.path}')
        self.work = partial_path(self.path)
        if self.work.parent.exists():   # left by a writer that was killed: start again
            shutil.rmtree(self.work.parent)
        self.work.parent.mkdir(parents=True)
        self._writer = Writer(self.work, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        for key, value in (custom_data or {}).items():   # metadata.yaml custom_data
            self._writer.set_custom_data(key, str(value))
        self._connections = {}
        self._store = typestore()
        self._open = False

    def __enter__(self) -> 'BagWriter':
        self.open()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:  # noqa: A003 (the file-like name)
        try:
            self._writer.open()
        except BaseException:
            self.abort()
            raise
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
        """Finish the bag and publish it under its name; on failure remove it and raise."""
        if not self._open:
            return
        self._open = False
        try:
            self._writer.close()
            _sync_tree(self.work)
            if self.path.exists():      # overwrite: the old bag goes once the new one is whole
                shutil.rmtree(self.path)
            os.replace(self.work, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            shutil.rmtree(self.work.parent, ignore_errors=True)
            raise
        shutil.rmtree(self.work.parent, ignore_errors=True)

    def abort(self) -> None:
        """Drop the bag being written (its partial folder); the published name is untouched."""
        if self._open:
            self._open = False
            try:
                self._writer.close()
            except Exception:   # a full disk fails the close too: the folder goes anyway
                pass
        shutil.rmtree(self.work.parent, ignore_errors=True)


def _sync_tree(folder: pathlib.Path) -> None:
    """Sync every file of a finished bag to disk, so the rename never publishes unwritten data."""
    for file in folder.iterdir():
        with open(file, 'rb') as f:
            os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: pathlib.Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_partial(path) -> bool:
    """Tell a bag (or a folder inside one) that a writer never finished."""
    return any(part.endswith(PARTIAL_SUFFIX) for part in pathlib.Path(path).parts)


def bag_paths(inputs: Iterable) -> list:
    """
    Expand files/folders into bag paths: rosbag2 folders (metadata.yaml) and .mcap files.

    Bags a writer never finished (under a `<name>.partial` folder) are skipped with a warning
    naming them; naming one directly is an error. A source bag found together with a sidecar
    of it is left out (the sidecar reads it).
    """
    found = []
    for item in inputs:
        path = pathlib.Path(item)
        if not path.exists():
            raise FileNotFoundError(f'no such bag or folder: {path}')
        if is_partial(path):
            raise FileNotFoundError(f'{path} is an unfinished bag (its writer was killed): '
                                    'run the command that wrote it again')
        if path.is_file() or (path / 'metadata.yaml').is_file():
            found.append(path)
            continue
        subs = sorted(p.parent for p in path.rglob('metadata.yaml'))
        loose = sorted(p for p in path.rglob('*.mcap')
                       if not (p.parent / 'metadata.yaml').exists())
        partial = sorted({_partial_root(p) for p in subs + loose if is_partial(p)})
        for bag in partial:
            warn(f'skipping {bag}: an unfinished bag (its writer was killed); run the command '
                 'that wrote it again')
        subs = [p for p in subs if not is_partial(p)]
        loose = [p for p in loose if not is_partial(p)]
        if not subs and not loose and not partial:
            raise FileNotFoundError(f'no rosbag2 folders or .mcap files under {path}')
        found.extend(subs + loose)
    return _without_sidecar_sources(found)


def _without_sidecar_sources(found: list) -> list:
    """Drop source bags listed beside a sidecar of theirs: read through it, never twice."""
    sources = set()
    for path in found:
        try:
            sources.add(sidecar_source(path))
        except BagError:   # its source is gone: reading the sidecar says so
            continue
    return [p for p in found if p.resolve() not in sources]


def _partial_root(path: pathlib.Path) -> pathlib.Path:
    while not path.name.endswith(PARTIAL_SUFFIX):
        path = path.parent
    return path


_WARNED: set = set()


def _warn_once(key, text: str) -> None:
    """Bags are read in several passes: say each thing once per process."""
    if key not in _WARNED:
        _WARNED.add(key)
        warn(text)


# ----- sidecars -----

# metadata.yaml custom_data keys of a sidecar: its source bag, relative to the sidecar folder
# (moving both together keeps the pair) and absolute (moving the sidecar alone keeps it too).
SIDECAR_SOURCE = 'vlmad.sidecar.source'
SIDECAR_SOURCE_ABSOLUTE = 'vlmad.sidecar.source_absolute'


def sidecar_data(source, sidecar, **about) -> Dict[str, str]:
    """custom_data for a sidecar written at `sidecar` adding topics to `source`, plus `about`."""
    source = pathlib.Path(source).resolve()
    data = {SIDECAR_SOURCE: os.path.relpath(source, pathlib.Path(sidecar).resolve()),
            SIDECAR_SOURCE_ABSOLUTE: str(source)}
    data.update({f'vlmad.sidecar.{k}': str(v) for k, v in about.items()})
    return data


def custom_data(path) -> Dict[str, str]:
    """metadata.yaml custom_data of a rosbag2 folder; {} for .mcap files and unreadable ones."""
    meta = pathlib.Path(path) / 'metadata.yaml'
    if not meta.is_file():
        return {}
    import yaml
    try:
        info = yaml.load(meta.read_text(), Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
        data = info['rosbag2_bagfile_information'].get('custom_data') or {}
    except Exception:   # the bag's reader names what is wrong with it
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def sidecar_source(path) -> Optional[pathlib.Path]:
    """Return the bag a sidecar adds to (None for other bags); BagError naming it if missing."""
    data = custom_data(path)
    if SIDECAR_SOURCE not in data:
        return None
    here = pathlib.Path(path).resolve()
    found = [here / data[SIDECAR_SOURCE]]
    if data.get(SIDECAR_SOURCE_ABSOLUTE):
        found.append(pathlib.Path(data[SIDECAR_SOURCE_ABSOLUTE]))
    for candidate in found:
        if candidate.exists():
            return candidate.resolve()
    raise BagError(f'{path}: a sidecar of {data.get(SIDECAR_SOURCE_ABSOLUTE) or found[0]}, '
                   f'which is missing (looked for {", ".join(map(str, found))}): put the '
                   'source bag back, or annotate it again')


def root_source(path) -> pathlib.Path:
    """Return the bag holding a sidecar's other topics (the path itself for any other bag)."""
    path = pathlib.Path(path)
    for _ in range(8):   # a sidecar of a sidecar is read as one bag too; no endless chains
        source = sidecar_source(path)
        if source is None:
            return path
        path = source
    raise BagError(f'{path}: a chain of more than 8 sidecars')


def topic_types(path) -> Dict[str, str]:
    """Map topic -> message type of a bag (a sidecar: with its source's); BagError if bad."""
    path = pathlib.Path(path)
    source = sidecar_source(path)
    own = _own_topic_types(path)
    return own if source is None else dict(topic_types(source), **own)


def _own_topic_types(path: pathlib.Path) -> Dict[str, str]:
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        try:
            with Reader(path) as reader:
                return {c.topic: c.msgtype for c in reader.connections}
        except Exception as err:   # rosbags raises several types on broken bags
            raise BagError(f'{path}: unreadable rosbag2 bag ({err})') from None
    out = {}
    for file in _mcap_files(path):
        from mcap.records import Channel, Schema
        from mcap.stream_reader import StreamReader
        schemas = {}
        with open(file, 'rb') as f:
            try:
                for record in StreamReader(f, skip_magic=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record.name
                    elif isinstance(record, Channel):
                        out.setdefault(record.topic, schemas.get(record.schema_id, ''))
            except Exception:   # truncated: read_messages says so; keep what was declared
                pass
    return out


def check_topics(path, required: Dict[str, str], optional: Optional[Dict[str, str]] = None,
                 types: Optional[Dict[str, str]] = None) -> None:
    """Raise BagError naming the bag, each required topic it lacks, each of another type."""
    types = topic_types(path) if types is None else types
    missing = [t for t in required if t not in types]
    expected = dict(optional or {}, **required)
    wrong = [f'{t} is {types[t]}, not {m}' for t, m in expected.items()
             if t in types and types[t] != m]
    if missing or wrong:
        what = ([f'no topic {", ".join(missing)}'] if missing else []) + wrong
        raise BagError(f'{path}: {"; ".join(what)}')


def _mcap_files(path: pathlib.Path) -> list:
    files = [path] if path.is_file() else sorted(path.glob('*.mcap'))
    if not files:
        raise FileNotFoundError(f'{path} is neither a rosbag2 folder nor an .mcap file')
    return files


def read_messages(path, topics: Optional[Iterable[str]] = None,
                  raw: bool = False) -> Iterator[Tuple[str, int, object]]:
    """
    Yield (topic, log_time_ns, message) from a rosbag2 folder or a single .mcap file.

    A bag whose writer crashed (no metadata.yaml, or an MCAP without its summary) still
    yields every complete message it holds, with a warning naming it. A bag that cannot be
    read, or a message its definition does not decode, raises BagError naming the bag.
    With raw=True the message is the CDR bytes. A sidecar yields its source's messages too.
    """
    path = pathlib.Path(path)
    wanted = set(topics) if topics is not None else None
    source = sidecar_source(path)
    if source is not None:
        yield from _read_with_source(path, source, wanted, raw)
        return
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        yield from _read_rosbag2(path, wanted, raw)
        return
    files = _mcap_files(path)
    if path.is_dir():
        _warn_once((path, 'meta'), f'{path} has no metadata.yaml (a recording that did not '
                   'close): reading its MCAP files record by record')
    for file in files:
        yield from _read_mcap(file, wanted, raw)


def _read_rosbag2(path: pathlib.Path, wanted, raw: bool):
    store = typestore()
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not conns and wanted is not None:   # rosbags reads every topic for none
                return
            _register_unknown(store, ((c.msgtype, c.msgdef.data) for c in conns if c.msgdef))
            for conn, stamp, data in reader.messages(connections=conns):
                yield conn.topic, stamp, (data if raw else _decode(store, data, conn.msgtype,
                                                                   path, conn.topic))
    except BagError:
        raise
    except Exception as err:   # rosbags raises several types on broken files
        raise BagError(f'{path}: unreadable rosbag2 bag ({type(err).__name__}: {err})') from None


def _read_with_source(path: pathlib.Path, source: pathlib.Path, wanted, raw: bool):
    """
    Read a sidecar and its source as one bag, in log-time order (sidecar topics replace theirs).

    At equal log times the sidecar's message comes first, as `vlmad annotate --layout copy`
    writes it, so both layouts read the same.
    """
    own = set(_own_topic_types(path))
    theirs = None if wanted is None else wanted - own
    streams = [_read_rosbag2(path, wanted, raw)]
    if theirs is None or theirs:
        streams.append(m for m in read_messages(source, theirs, raw) if m[0] not in own)
    yield from heapq.merge(*streams, key=lambda m: m[1])


def _decode(store, data, msgtype: str, path, topic: str):
    try:
        return store.deserialize_cdr(data, msgtype)
    except Exception as err:   # a definition that does not match the bytes
        raise BagError(f'{path}: {topic} does not decode as {msgtype} (wrong message '
                       f'definition? {type(err).__name__}: {err})') from None


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
                    msg = record.data if raw else _decode(store, record.data, msgtype, file,
                                                          channel.topic)
                    yield channel.topic, record.log_time, msg
        except (McapError, EOFError, struct.error) as err:
            # truncated file: everything complete before the break was yielded
            _warn_once((file, 'cut'), f'{file} is truncated ({type(err).__name__} at byte '
                       f'{f.tell()}): using the complete messages before the cut')


def _register_unknown(store, defs) -> None:
    """Register message types found in a bag that the typestore does not know."""
    for msgtype, msgdef in defs:
        if msgtype in store.types or not msgdef:
            continue
        try:
            store.register(get_types_from_msg(msgdef, msgtype))
        except Exception:  # a definition we cannot parse stays unknown; reading it raises later
            pass
