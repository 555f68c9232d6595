"""
`vlmad annotate IN_BAG... --out OUT --teacher rule|openai`: teacher records into rosbags.

Per input bag: the dataset reader (vlmad_ros.data.reader) gives the keyframes with their
calibration and 3 s future from the odometry (keyframes without it are skipped and counted);
the teacher answers each one (a thread pool for remote teachers); every answer is journaled
(resume after Ctrl-C or kill, see journal.py); when the bag is complete the output bag is
written. `--layout sidecar` (default): a small bag of only the DrivingReasoning records on
/vlmad/reasoning whose metadata names the input bag (bagschema's sidecars: readers and
`ros2 bag play -i IN -i OUT` take both as one). `--layout copy`: all input topics copied byte
for byte plus the records, one self-contained bag (for Humble, whose `ros2 bag play` plays one
bag). `--shard i/N` takes every N-th input bag (sorted by path), so machines split the work.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Dict, List, Optional, Tuple

from vlmad_ros import labels as label_sets, topics
from vlmad_ros.bagschema import (bag_paths, BagError, BagWriter, read_messages, root_source,
                                 sidecar_data, STORAGES, topic_types)
from vlmad_ros.data.reader import RawSample, read_samples, ReaderConfig, ReadStats, skip_bag
from vlmad_ros.images import compressed_to_rgb, ImageConversionError
from vlmad_ros.rig import CAMERA_NAMES
from vlmad_ros.teacher.base import FatalTeacherError, Status, TeacherInput, TeacherResult, Usage
from vlmad_ros.teacher.budget import BudgetExhausted
from vlmad_ros.teacher.journal import Journal, JournalMismatch
from vlmad_ros.teacher.scene import read_scene_index, SceneIndex

REASONING_TYPE = 'vlmad_ros/msg/DrivingReasoning'
EXIT_OK, EXIT_USAGE, EXIT_TEACHER, EXIT_UNREADABLE, EXIT_INTERRUPTED = 0, 2, 3, 4, 130
EXIT_DISK = 5   # writing failed (full disk, no permission): nothing half-written is left
EXIT_BUDGET = 6  # --max-requests / --max-cost reached: rerun to continue
LAYOUTS = ('sidecar', 'copy')


def parse_shard(text: str) -> Tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(v) for v in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--shard must look like i/N (e.g. 0/4), got {text!r}')
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f'--shard i/N needs 0 <= i < N, got {text!r}')
    return i, n


def _positive(kind):
    def check(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f'must be > 0, got {text}')
        return value
    return check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('inputs', nargs='+', metavar='IN_BAG',
                        help='rosbag2 folders, .mcap files, or folders holding them')
    parser.add_argument('--out', required=True, help='output folder (one bag per input bag)')
    parser.add_argument('--layout', choices=LAYOUTS, default='sidecar',
                        help='sidecar: output bags hold only the teacher records and name their '
                             'input bag, which must stay (default); copy: input topics copied '
                             'too, self-contained (Humble: ros2 bag play plays one bag)')
    parser.add_argument('--teacher', choices=('rule', 'openai'), default='rule',
                        help='rule: deterministic offline teacher (default); openai: any '
                             'OpenAI-compatible vision endpoint')
    parser.add_argument('--rate', type=_positive(float), default=2.0,
                        help='keyframes per second at most: the bag keyframe marks, thinned '
                             '(default: %(default)s)')
    parser.add_argument('--camera', default='CAM_FRONT', choices=CAMERA_NAMES,
                        help='camera shown to the teacher')
    parser.add_argument('--shard', type=parse_shard, default=(0, 1), metavar='i/N',
                        help='annotate only input bags with index %% N == i (sorted by path)')
    parser.add_argument('--concurrency', type=_positive(int), default=4,
                        help='keyframes annotated in parallel (default: %(default)s)')
    parser.add_argument('--storage', choices=sorted(STORAGES), default='mcap')
    parser.add_argument('--overwrite', action='store_true',
                        help='annotate bags again even if OUT already holds them')
    parser.add_argument('--retry-failed', action='store_true',
                        help='on resume, ask again for keyframes journaled as FAILED')
    parser.add_argument('--summary-json', default=None, help='also write the summary here')
    parser.add_argument('--save-images', default=None, metavar='DIR',
                        help='also save each prompt image (front camera + red path) as JPEG')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    g = parser.add_argument_group('openai teacher')
    g.add_argument('--base-url', default='https://api.openai.com/v1',
                   help='OpenAI-compatible API root (vLLM: http://host:8000/v1, '
                        'Ollama: http://host:11434/v1)')
    g.add_argument('--model', default='gpt-4o')
    g.add_argument('--api-key-env', default='OPENAI_API_KEY', metavar='NAME',
                   help='environment variable holding the API key (sent as a Bearer token)')
    g.add_argument('--timeout', type=_positive(float), default=60.0,
                   help='seconds per HTTP request (default: %(default)s)')
    g.add_argument('--max-retries', type=int, default=5,
                   help='retries on 429/5xx/timeouts per request (default: %(default)s)')
    g.add_argument('--backoff-base', type=float, default=1.0,
                   help='first retry delay [s], doubling, with jitter')
    g.add_argument('--backoff-max', type=float, default=60.0, help='longest retry delay [s]')
    g.add_argument('--max-tokens', type=_positive(int), default=500)
    g.add_argument('--image-width', type=int, default=1600,
                   help='shrink wider prompt images to this width (default: %(default)s; 0: keep)')
    g.add_argument('--detail', choices=('low', 'high', 'auto'), default='auto')
    g.add_argument('--structured', choices=('openai', 'vllm', 'ollama', 'json', 'none'),
                   default='openai',
                   help='how the answer JSON schema is sent: openai = response_format '
                        'json_schema (OpenAI; vLLM and Ollama /v1 accept it too; default), '
                        'vllm = structured_outputs + guided_json, ollama = format, json = JSON '
                        'mode without schema, none = nothing (servers that reject the fields)')
    g.add_argument('--no-json-mode', action='store_const', const='none', dest='structured',
                   help='same as --structured none')
    g.add_argument('--max-requests', type=_positive(int), default=None,
                   help='stop after this many HTTP requests (retries count); rerun to continue')
    g.add_argument('--max-cost', type=_positive(float), default=None, metavar='USD',
                   help='stop once this much is spent (needs --price-input/--price-output or '
                        '--price-table); rerun to continue')
    g.add_argument('--prompt-version', default=None,
                   help='prompt version: vlmad_ros/teacher/prompts/<version>.*.txt '
                        '(default: vlmad-v1)')
    g.add_argument('--price-input', type=float, default=0.0,
                   help='USD per million prompt tokens (for the cost report)')
    g.add_argument('--price-output', type=float, default=0.0,
                   help='USD per million completion tokens')
    g.add_argument('--price-table', default=None,
                   help='yaml {model: {input: USD/Mtok, output: USD/Mtok}}; --price-* override')
    g.add_argument('--cache-dir', default=None,
                   help='answer cache (default ~/.cache/vlmad_ros/teacher)')
    g.add_argument('--no-cache', action='store_true')


# ----- teacher construction -----

def _price(args):
    from vlmad_ros.teacher.budget import Price
    price_in, price_out = args.price_input, args.price_output
    if args.price_table:
        import yaml
        with open(args.price_table) as f:
            table = yaml.safe_load(f) or {}
        if not isinstance(table, dict):
            raise ValueError(f'--price-table {args.price_table}: expected a mapping of models')
        entry = table.get(args.model) or {}
        price_in = price_in or float(entry.get('input', 0.0))
        price_out = price_out or float(entry.get('output', 0.0))
    return Price(input_per_mtok=price_in, output_per_mtok=price_out)


def make_teacher(args):
    """Build the teacher the arguments ask for; ValueError naming the bad option."""
    if args.teacher == 'rule':
        from vlmad_ros.teacher.rule import RuleTeacher
        return RuleTeacher()
    from vlmad_ros.teacher.budget import Budget
    from vlmad_ros.teacher.cache import AnswerCache, default_cache_dir
    from vlmad_ros.teacher.openai_client import ChatClient, ClientConfig
    from vlmad_ros.teacher.openai_teacher import ImageConfig, OpenAITeacher
    from vlmad_ros.teacher.prompt import DEFAULT_PROMPT, load_prompt
    if args.max_retries < 0:
        raise ValueError(f'--max-retries must be >= 0, got {args.max_retries}')
    config = ClientConfig(base_url=args.base_url, model=args.model, timeout=args.timeout,
                          max_retries=args.max_retries, backoff_base=args.backoff_base,
                          backoff_max=args.backoff_max, max_tokens=args.max_tokens,
                          structured=_structured(args))
    api_key = os.environ.get(args.api_key_env, '')
    if not api_key:
        print(f'note: ${args.api_key_env} is not set: sending no Authorization header',
              file=sys.stderr)
    cache = None if args.no_cache else AnswerCache(args.cache_dir or default_cache_dir())
    price = _price(args)
    budget = Budget(getattr(args, 'max_requests', None), getattr(args, 'max_cost', None), price)
    return OpenAITeacher(ChatClient(config, api_key=api_key, budget=budget),
                         load_prompt(args.prompt_version or DEFAULT_PROMPT),
                         image=ImageConfig(width=args.image_width, detail=args.detail),
                         price=price, cache=cache)


def _structured(args) -> str:
    """--structured; callers without it (the annotator node) keep JSON mode unless told not to."""
    chosen = getattr(args, 'structured', None)
    if chosen:
        return chosen
    return 'none' if getattr(args, 'no_json_mode', False) else 'json'


# ----- one keyframe -----

def teacher_input(sample: RawSample, camera: str, scene: Optional[SceneIndex],
                  decode_width: int) -> TeacherInput:
    """Decode the chosen camera (at a reduced DCT scale when the teacher needs less)."""
    cam = sample.rig[camera]
    k = sample.rig.names.index(camera)
    min_size = None
    if decode_width and decode_width < cam.width:
        min_size = (decode_width, max(1, cam.height * decode_width // cam.width))
    image = compressed_to_rgb(sample.images[k], min_size=min_size)
    if (image.shape[1], image.shape[0]) != (cam.width, cam.height):
        cam = cam.scaled(image.shape[1], image.shape[0])
    objects = lights = None
    if scene is not None and scene.has_truth:
        objects, lights = scene.at(sample.stamp_ns)
    return TeacherInput(image=image, camera=cam, trajectory=sample.trajectory,
                        speed=float(sample.ego.speed), stamp_ns=sample.stamp_ns,
                        objects=objects, lights=lights)


def reader_config(camera: str) -> ReaderConfig:
    """Read only the camera the teacher is shown (no six-camera synchronisation needed)."""
    return ReaderConfig(camera_names=(camera,), image_topics=(topics.camera_image_topic(camera),),
                        info_topics=(topics.camera_info_topic(camera),))


def annotate_sample(teacher, sample: RawSample, camera: str, scene: Optional[SceneIndex],
                    decode_width: int, save_to: Optional[pathlib.Path] = None) -> TeacherResult:
    """Worker-thread job; image problems become a FAILED record, fatal errors propagate."""
    try:
        inp = teacher_input(sample, camera, scene, decode_width)
    except ImageConversionError as err:
        return TeacherResult.failed(f'image_{err.reason}', teacher.name, teacher.prompt_version)
    if save_to is not None:
        from vlmad_ros.teacher.openai_teacher import ImageConfig, prompt_image
        save_to.write_bytes(prompt_image(inp, ImageConfig(width=decode_width)))
    return teacher.annotate(inp)


# ----- summary -----

@dataclasses.dataclass
class Summary:
    """What a run did; printed at the end and optionally written as JSON."""

    bags: int = 0
    bags_already_done: int = 0
    unreadable: List[str] = dataclasses.field(default_factory=list)   # 'bag: why', skipped
    keyframes: int = 0
    annotated: int = 0
    resumed: int = 0
    cached: int = 0
    failed: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    skipped: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    usage: Usage = dataclasses.field(default_factory=Usage)
    wall_s: float = 0.0
    stopped: str = ''            # why the run stopped early ('budget'); empty when complete
    outputs: List[str] = dataclasses.field(default_factory=list)
    layout: str = 'sidecar'      # --layout of the output bags
    bytes_written: int = 0       # size of the output bags this run wrote
    # label histogram of the OK records in every output bag (those written, resumed and already
    # done): category -> label text -> count, every label of the set listed, zeros too
    labels: Dict[str, Dict[str, int]] = dataclasses.field(
        default_factory=lambda: {c: dict.fromkeys(s, 0) for c, s in label_sets.LABEL_SETS.items()})

    def count(self, result: TeacherResult) -> None:
        if result.ok:
            self.annotated += 1
        else:
            self.failed[result.failure_reason] += 1
        self.cached += int(result.cached)
        self.usage.add(result.usage)

    def count_labels(self, results) -> None:
        """Add one output bag's OK records to the label histogram (how balanced the labels are)."""
        for r in results:
            if int(r.status) != int(Status.OK):
                continue
            indices = (r.control_action, r.turn_action, r.lane_action)
            for category, index in zip(label_sets.LABEL_SETS, indices):
                text = label_sets.label_text(category, index)
                self.labels[category][text] = self.labels[category].get(text, 0) + 1

    def add_read_stats(self, stats: ReadStats) -> None:
        self.keyframes += stats.keyframes
        for name in ('no_future', 'no_images', 'no_odometry', 'no_calibration'):
            value = getattr(stats, f'skipped_{name}')
            if value:
                self.skipped[name] += value

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['failed'] = dict(self.failed)
        d['skipped'] = dict(self.skipped)
        return d

    def text(self) -> str:
        failed = sum(self.failed.values())
        lines = [
            f'bags: {self.bags} annotated, {self.bags_already_done} already done, '
            f'{len(self.unreadable)} unreadable (skipped)',
            f'keyframes: {self.keyframes}',
            f'annotated: {self.annotated} ok ({self.cached} from cache), '
            f'{self.resumed} resumed from the journal',
            f'failed: {failed}' + (f' {dict(self.failed)}' if failed else ''),
            f'skipped: {sum(self.skipped.values())}'
            + (f' {dict(self.skipped)}' if self.skipped else ''),
            f'tokens: {self.usage.prompt_tokens} prompt + {self.usage.completion_tokens} '
            f'completion in {self.usage.requests} requests; cost ${self.usage.cost_usd:.4f}',
            f'wall time: {self.wall_s:.1f} s',
            f'written: {self.bytes_written} bytes in {len(self.outputs)} {self.layout} bags',
        ]
        for category, counts in self.labels.items():
            if any(counts.values()):
                lines.append(f'labels {category}: ' + ', '.join(
                    f'{text} {n}' for text, n in counts.items()))
        return '\n'.join(lines)


# ----- one bag -----

def write_output_bag(src: pathlib.Path, dst: pathlib.Path, records: Dict[int, TeacherResult],
                     storage: str, frame_id: str = topics.BASE_FRAME) -> None:
    """Input topics copied as raw CDR plus the records, in log-time order; whole or not at all."""
    types = topic_types(src)
    stamps = sorted(records)
    nxt = 0
    # --overwrite: BagWriter replaces the old bag only once the new one is complete.
    with BagWriter(dst, storage=storage, overwrite=True) as bag:
        bag.add_topic(topics.REASONING, REASONING_TYPE)
        for topic, log_ns, data in read_messages(src, raw=True):
            if topic == topics.REASONING or topic not in types:
                continue  # earlier teacher records are replaced by this run's
            while nxt < len(stamps) and stamps[nxt] <= log_ns:
                bag.write(topics.REASONING, records[stamps[nxt]].to_rosbags_msg(
                    stamps[nxt], frame_id), stamps[nxt])
                nxt += 1
            bag.add_topic(topic, types[topic])
            bag.write_raw(topic, bytes(data), log_ns)
        for stamp in stamps[nxt:]:
            bag.write(topics.REASONING, records[stamp].to_rosbags_msg(stamp, frame_id), stamp)


def write_sidecar_bag(src: pathlib.Path, dst: pathlib.Path, records: Dict[int, TeacherResult],
                      storage: str, about: Dict[str, str],
                      frame_id: str = topics.BASE_FRAME) -> None:
    """Only the records, in a bag whose metadata names the input (a sidecar's: its source)."""
    data = sidecar_data(root_source(src), dst, **about)
    with BagWriter(dst, storage=storage, overwrite=True, custom_data=data) as bag:
        bag.add_topic(topics.REASONING, REASONING_TYPE)   # declared even when empty
        for stamp in sorted(records):
            bag.write(topics.REASONING, records[stamp].to_rosbags_msg(stamp, frame_id), stamp)


def write_bag(layout: str, src: pathlib.Path, dst: pathlib.Path,
              records: Dict[int, TeacherResult], storage: str, teacher) -> int:
    """Write one output bag in `layout`; return its size in bytes."""
    if layout == 'copy':
        write_output_bag(src, dst, records, storage)
    else:
        write_sidecar_bag(src, dst, records, storage,
                          {'teacher': teacher.name, 'prompt_version': teacher.prompt_version,
                           'topic': topics.REASONING})
    return sum(f.stat().st_size for f in dst.rglob('*') if f.is_file())


def _drain(pending: dict, journal: Journal, summary: Summary, bar) -> None:
    """
    Wait for at least one answer and journal it; a worker's fatal error propagates.

    A budget stop first waits for the requests already in flight and journals their answers:
    they are paid for, and the rerun must not ask for them again.
    """
    done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
    stop = next((f.exception() for f in done if isinstance(f.exception(), BudgetExhausted)),
                None)
    if stop is not None:
        done, _ = cf.wait(list(pending))
    for fut in done:
        stamp = pending.pop(fut)
        if isinstance(fut.exception(), BudgetExhausted):
            continue
        result = fut.result()
        journal.add(stamp, result)
        summary.count(result)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ok=summary.annotated, failed=sum(summary.failed.values()),
                            cost=f'${summary.usage.cost_usd:.3f}', refresh=False)
    if stop is not None:
        raise stop


def _out_name(src: pathlib.Path) -> str:
    """Output bag folder name: the input folder's name, or the .mcap file's stem."""
    return src.stem if src.is_file() else src.name


def annotate_bag(src: pathlib.Path, out_dir: pathlib.Path, teacher, args, summary: Summary,
                 pool: cf.ThreadPoolExecutor, bar) -> pathlib.Path:
    dst = out_dir / _out_name(src)
    journal = Journal(out_dir / f'{dst.name}.journal.jsonl',
                      {'input': str(src.resolve()), 'teacher': teacher.name,
                       'prompt_version': teacher.prompt_version}).start()
    pending: Dict[cf.Future, int] = {}
    try:
        if args.retry_failed:
            journal.records = {s: r for s, r in journal.records.items() if r.ok}
        scene = read_scene_index(src)
        stats = ReadStats()
        min_gap = int(1e9 / args.rate) - 50_000_000
        last = None
        decode_width = int(getattr(teacher, 'image_width', 0) or 0)
        save_dir = pathlib.Path(args.save_images) if args.save_images else None
        if save_dir is not None:  # saved images are shown at --image-width, whatever the teacher
            save_dir.mkdir(parents=True, exist_ok=True)
            decode_width = args.image_width
        counted = 0
        for sample in read_samples(src, reader_config(args.camera), stats):
            if bar is not None and not counted:  # the reader knows the usable keyframes now
                counted = stats.keyframes - stats.skipped_no_future - stats.skipped_no_odometry
                bar.total = (bar.total or 0) + counted
            if last is not None and sample.stamp_ns - last < min_gap:
                summary.skipped['rate'] += 1
                continue
            last = sample.stamp_ns
            if sample.stamp_ns in journal:
                summary.resumed += 1
                if bar is not None:
                    bar.update(1)
                continue
            while len(pending) >= 2 * args.concurrency:
                _drain(pending, journal, summary, bar)
            save_to = (save_dir / f'{dst.name}_{sample.stamp_ns}.jpg') if save_dir else None
            pending[pool.submit(annotate_sample, teacher, sample, args.camera, scene,
                                decode_width, save_to)] = sample.stamp_ns
        while pending:
            _drain(pending, journal, summary, bar)
        summary.add_read_stats(stats)
        if stats.keyframes == 0:
            print(f'vlmad annotate: warning: {src} has no {topics.KEYFRAME} marks: nothing to '
                  'annotate (keyframes come from the bag layout, docs/DATA.md)', file=sys.stderr)
        if bar is not None:  # keyframes that were skipped never reach the bar
            bar.total = (bar.total or 0) - counted + len(journal.records)
            bar.refresh()
        summary.bytes_written += write_bag(args.layout, src, dst, journal.records, args.storage,
                                           teacher)
        summary.count_labels(journal.records.values())
    except BaseException:
        for fut in pending:
            fut.cancel()
        empty = not journal.records
        journal.close()
        if empty:  # nothing finished: leave nothing behind
            journal.remove()
        raise
    journal.remove()
    return dst


def count_done_labels(dst: pathlib.Path, summary: Summary) -> None:
    """Count a finished output bag's labels: a rerun's summary still describes the whole --out."""
    try:
        summary.count_labels(msg for _, _, msg in read_messages(dst, topics=[topics.REASONING]))
    except BagError as err:
        skip_bag(err)


def _annotate_all(bags, out_dir: pathlib.Path, teacher, args, summary: Summary, pool,
                  bar) -> None:
    """Annotate each bag not done yet; an unreadable bag is noted in the summary and skipped."""
    for src in bags:
        if (out_dir / _out_name(src)).exists() and not args.overwrite:
            summary.bags_already_done += 1
            # killed after the bag's rename, before its journal went: the journal is done
            (out_dir / f'{_out_name(src)}.journal.jsonl').unlink(missing_ok=True)
            count_done_labels(out_dir / _out_name(src), summary)
            continue
        try:
            summary.outputs.append(str(annotate_bag(src, out_dir, teacher, args, summary,
                                                    pool, bar)))
        except BagError as err:
            skip_bag(err)
            summary.unreadable.append(str(err))
            continue
        summary.bags += 1


def main(args) -> int:
    started = time.monotonic()
    try:
        bags = sorted(bag_paths(args.inputs), key=lambda p: str(p))
        teacher = make_teacher(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f'vlmad annotate: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    names = [_out_name(b) for b in bags]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        print(f'vlmad annotate: error: several input bags are named {clash}: their outputs '
              'would collide in --out; annotate them into different --out folders',
              file=sys.stderr)
        return EXIT_USAGE
    shard_i, shard_n = args.shard
    bags = [b for k, b in enumerate(bags) if k % shard_n == shard_i]
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(layout=args.layout)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=None, unit='kf', desc='annotate', dynamic_ncols=True, file=sys.stderr)
    pool = cf.ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix='teacher')
    code = EXIT_OK
    try:
        _annotate_all(bags, out_dir, teacher, args, summary, pool, bar)
        if summary.unreadable:
            code = EXIT_UNREADABLE
    except BudgetExhausted as err:
        summary.stopped = 'budget'
        print(f'\nvlmad annotate: budget: {err}; finished keyframes are journaled in '
              f'{out_dir}: run the same command again to continue', file=sys.stderr)
        code = EXIT_BUDGET
    except FatalTeacherError as err:
        print(f'\nvlmad annotate: teacher error: {err}', file=sys.stderr)
        if any(out_dir.glob('*.journal.jsonl')):
            print(f'vlmad annotate: finished keyframes are journaled in {out_dir}: run the same '
                  'command again to resume', file=sys.stderr)
        code = EXIT_TEACHER
    except JournalMismatch as err:
        print(f'vlmad annotate: error: {err}', file=sys.stderr)
        code = EXIT_USAGE
    except OSError as err:
        print(f'\nvlmad annotate: error: cannot write {out_dir}: {err}; the bag being written '
              'was removed and finished keyframes stay journaled: run the same command again '
              'once there is room', file=sys.stderr)
        code = EXIT_DISK
    except KeyboardInterrupt:
        print('\nvlmad annotate: interrupted; finished keyframes are journaled in '
              f'{out_dir}: run the same command again to resume', file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        pool.shutdown(wait=code == EXIT_OK, cancel_futures=True)
        if bar is not None:
            bar.close()
    summary.wall_s = time.monotonic() - started
    print(summary.text())
    if args.summary_json:
        with open(args.summary_json, 'w') as f:
            json.dump(summary.as_dict(), f, indent=2)
    return code
