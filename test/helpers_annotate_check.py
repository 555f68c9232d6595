"""
The annotator issue's "Checked by", on any bag.

    python test/helpers_annotate_check.py BAG OUT

Runs `vlmad annotate BAG --out OUT --teacher openai` against the hostile loopback server (HTTP
429 with Retry-After on every 4th request, broken JSON, labels outside the sets), then checks
with the independent mcap + mcap-ros2-support reader that OUT holds DrivingReasoning records,
that every request carried the front image with the red path and the key as a Bearer token,
and that the key is nowhere in OUT or the command's output. Run from the repo root after
`. ./env.sh`. Exit status 0 when every check holds.
"""
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import helpers_annotate as h  # noqa: E402 (test/ is not a package)
from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from test_annotate_cli import hostile  # noqa: E402
from vlmad_ros.teacher.overlay import red_mask  # noqa: E402

KEY = 'sk-checked-by-7a7a7a7a'


def main(bag: str, out: str) -> int:
    out = pathlib.Path(out)
    with h.ChatServer(hostile) as srv:
        cmd = ['vlmad', 'annotate', bag, '--out', str(out), '--teacher', 'openai',
               '--base-url', srv.base_url, '--model', 'gpt-4o', '--api-key-env', 'CHECK_KEY',
               '--no-cache', '--backoff-base', '0.05', '--no-progress']
        proc = subprocess.run(cmd, env=dict(os.environ, CHECK_KEY=KEY), capture_output=True,
                              text=True)
    print(' '.join(cmd).replace(srv.base_url, 'http://127.0.0.1:PORT/v1'))
    print('exit', proc.returncode)
    print(proc.stdout.strip())
    status = {}
    for file in out.rglob('*.mcap'):
        with open(file, 'rb') as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            for _, _, _, msg in reader.iter_decoded_messages(topics=['/vlmad/reasoning']):
                key = 'OK' if msg.status == 0 else msg.failure_reason
                status[key] = status.get(key, 0) + 1
    reds = [int(red_mask(h.request_image(r)).sum()) for r in srv.requests]
    checks = {
        'exit 0': proc.returncode == 0,
        f'mcap + mcap-ros2-support: DrivingReasoning records {sum(status.values())} '
        f'{status}': bool(status.get('OK')),
        f'{len(srv.requests)} requests, all with the key as Bearer':
            all(r['headers'].get('Authorization') == f'Bearer {KEY}' for r in srv.requests),
        f'all request images have the red path (min {min(reds)} red px, '
        f'{h.request_image(srv.requests[0]).shape})': min(reds) > 100,
        'key nowhere in OUT': not any(KEY.encode() in p.read_bytes()
                                      for p in out.rglob('*') if p.is_file()),
        'key not in the output': KEY not in proc.stdout + proc.stderr,
    }
    for text, ok in checks.items():
        print(('ok    ' if ok else 'FAIL  ') + text)
    return 0 if all(checks.values()) else 1


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:3]))
