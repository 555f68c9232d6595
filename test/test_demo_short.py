"""`vlmad demo --short`: the main job end to end (three processes over DDS, table, GIF, PNG)."""
import json
import subprocess
import sys

from PIL import Image
import pytest

pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_demo_short_prints_a_table_and_writes_video_and_summary(ros_env, tmp_path):
    out = tmp_path / 'demo_out'
    proc = subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'demo', '--short', '--out',
                           str(out), '--timeout', '240'], env=ros_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'driving score' in proc.stdout and '| red_light | 9001 |' in proc.stdout
    results = json.loads((out / 'results.json').read_text())
    row = results['scenarios'][0]
    assert row['plans'] == 20 and row['plans_missed'] == 0     # 4 s, a set every 0.2 s
    assert 0.0 <= row['driving_score'] <= 100.0
    assert (out / 'results.md').read_text().startswith('### vlmad demo')
    gif = Image.open(out / 'demo.gif')
    assert gif.n_frames == 20 and gif.size[0] >= 900
    png = Image.open(out / 'summary.png')
    assert png.size[0] >= 900 and png.size[1] >= 300
    for name in ('planner_node', 'path_follower', 'sim_node'):
        assert (out / 'logs' / f'{name}.log').stat().st_size > 0
