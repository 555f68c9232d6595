"""`vlmad bench soak`: a short run of the installed planner_node under the six-camera load."""
import json
import math
import subprocess

from vlmad_ros.bench.soak import episodes, slope_per_min


def test_slope_is_least_squares_per_minute():
    t = [0.0, 30.0, 60.0, 90.0, 120.0]
    assert math.isclose(slope_per_min(t, [100 + 0.5 * x for x in t]), 30.0)  # 0.5 per s
    assert math.isclose(slope_per_min(t, [5, 7, 5, 7, 5]), 0.0, abs_tol=1e-9)
    assert math.isnan(slope_per_min([0, 1], [1, 2]))
    assert episodes(5) == ['red_light:9001', 'pedestrian:9002', 'stopped_vehicle:9003',
                           'turn:9004', 'red_light:9005']


def test_short_soak_reports_slopes_and_dropped_sets(tmp_path):
    out = tmp_path / 'soak.json'
    proc = subprocess.run(['vlmad', 'bench', 'soak', '--duration', '20', '--sample-every', '1',
                           '--json', str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r['mode'] == 'planner' and r['duration_s'] == 20
    assert len(r['loadavg_before']) == 3 and r['command'].startswith('vlmad bench soak')
    assert 350 <= r['sets_offered'] <= 420, 'about 20 Hz for 20 s'
    assert r['paths_received'] > 0
    assert r['dropped_sets'] == r['sets_offered'] - r['paths_received']
    rss, lat = r['rss_mb'], r['latency_ms']
    assert rss['samples'] >= 15 and 50 < rss['first'] < 4000
    assert math.isfinite(rss['slope_per_min']) and math.isfinite(lat['slope_per_min'])
    assert 0 < lat['p50'] <= lat['p95']
