"""`vlmad annotate`: budgets stop cleanly, reruns continue; the API key is in no file written."""
import json
import os

import helpers_annotate as h
from test_annotate_cli import decode, future_keyframes, vlmad

KEY = 'sk-SECRET-canary-7a1b2c3d4e5f60718293'
KEY_ENV = 'VLMAD_CANARY_KEY'


def _args(tmp_path, url, *extra, cache=('--no-cache',)):
    return [tmp_path / 'in', '--out', tmp_path / 'out', '--teacher', 'openai', '--base-url', url,
            '--image-width', '160', '--concurrency', '1', '--backoff-base', '0.01',
            '--summary-json', tmp_path / 's.json', *cache, *extra]


def test_max_requests_stops_cleanly_and_reruns_continue(tmp_path):
    want = future_keyframes(h.write_drive_bag(tmp_path / 'in', duration_s=5.0))
    assert len(want) == 5
    journal = tmp_path / 'out' / 'in.journal.jsonl'
    runs = []
    with h.ChatServer() as srv:
        for _ in range(3):
            proc = vlmad(*_args(tmp_path, srv.base_url, '--max-requests', '2'))
            runs.append((proc.returncode, json.loads((tmp_path / 's.json').read_text())))
            if proc.returncode == 6:
                assert 'run the same command again to continue' in proc.stderr
                assert not (tmp_path / 'out' / 'in').exists() and journal.exists()
    assert [code for code, _ in runs] == [6, 6, 0]
    assert [(s['annotated'], s['resumed'], s['stopped']) for _, s in runs] == \
        [(2, 0, 'budget'), (2, 2, 'budget'), (1, 4, '')]
    assert len(srv.requests) == len(want), 'nothing asked twice'
    assert [s for s, _ in decode(tmp_path / 'out' / 'in')[1]] == want
    assert not journal.exists()


def test_max_cost_with_prices_stops_after_the_budget(tmp_path):
    want = future_keyframes(h.write_drive_bag(tmp_path / 'in', duration_s=5.0))
    # 1000 prompt tokens at 1000 USD/Mtok: 1 USD a reply; 2.5 USD allows three
    args = ['--max-cost', '2.5', '--price-input', '1000']
    with h.ChatServer() as srv:
        first = vlmad(*_args(tmp_path, srv.base_url, *args))
        assert first.returncode == 6 and '--max-cost 2.5 USD reached' in first.stderr
        s = json.loads((tmp_path / 's.json').read_text())
        assert s['annotated'] == 3 and abs(s['usage']['cost_usd'] - 3.0) < 1e-9
        rerun = vlmad(*_args(tmp_path, srv.base_url, *args))
        assert rerun.returncode == 0, rerun.stderr
    assert len(srv.requests) == len(want)
    no_price = vlmad(*_args(tmp_path, 'http://127.0.0.1:9/v1', '--max-cost', '1'))
    assert no_price.returncode == 2 and 'needs prices' in no_price.stderr


def _failing(req):
    """Every third request a 500 that echoes the key, like servers that dump the request."""
    echo = {'error': {'message': f'internal error handling Bearer {KEY}'}}
    return (500, {}, echo) if req['index'] % 3 == 1 else h.good()


def test_api_key_in_no_file_and_no_output_even_when_the_server_echoes_it(tmp_path):
    h.write_drive_bag(tmp_path / 'in', duration_s=5.0)
    env = dict(os.environ, **{KEY_ENV: KEY}, ROS_LOG_DIR=str(tmp_path / 'log'),
               HOME=str(tmp_path / 'home'))
    common = ['--api-key-env', KEY_ENV, '--max-retries', '0', '--concurrency', '2']
    outputs = []
    with h.ChatServer(_failing) as srv:
        proc = vlmad(*_args(tmp_path, srv.base_url, *common, '--max-requests', '3'), env=env)
        outputs.append(proc)
        assert proc.returncode == 6, proc.stderr
    echo = {'error': {'message': f'Incorrect API key provided: {KEY}', 'code': 'invalid_key'}}
    with h.ChatServer(lambda r: (401, {}, echo)) as srv:
        proc = vlmad(*_args(tmp_path, srv.base_url, *common), env=env)
        outputs.append(proc)
        assert proc.returncode == 3 and 'rejected' in proc.stderr
        assert srv.requests[0]['headers']['Authorization'] == f'Bearer {KEY}'
    with h.ChatServer(_failing) as srv:  # finish, with the cache on this time
        proc = vlmad(*_args(tmp_path, srv.base_url, *common,
                            cache=('--cache-dir', tmp_path / 'cache')), env=env)
        outputs.append(proc)
        assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['failed'].get('http_500'), 'the failing requests were recorded'
    files = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert any(p.suffix == '.mcap' for p in files) and len(files) >= 3
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    for proc in outputs:
        assert KEY not in proc.stdout + proc.stderr
