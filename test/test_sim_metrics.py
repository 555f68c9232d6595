"""Closed-loop metrics on scripted runs in the synthetic world (no ROS)."""
import math

from helpers_sim import BlindDriver, run
import pytest
from vlmad_ros.sim.episode import Episode, EpisodeSpec, make_scene
from vlmad_ros.sim.score import markdown_table, ScenarioResult, summarize
from vlmad_ros.synth.world import EgoControl

DT = 0.1


def test_driving_into_a_stopped_car_counts_a_vehicle_collision():
    ep = Episode(EpisodeSpec('stopped_vehicle', 0, 10.0), DT, route_length=100.0)
    run(ep, BlindDriver(8.0))
    r = ep.result()
    assert [aid for _, aid in ep.world.infractions.collisions] == ['veh_stalled']
    assert (r.collisions_vehicle, r.collisions_pedestrian, r.red_lights) == (1, 0, 0)
    assert r.infraction_penalty == pytest.approx(0.60)
    assert r.driving_score == pytest.approx(0.60 * r.route_completion)


def test_running_a_red_light_counts_an_infraction_the_expert_does_not():
    spec = EpisodeSpec('red_light', 0, 10.0)
    expert = make_scene(spec)
    for _ in range(int(spec.duration / DT)):
        expert.step(DT)
    assert expert.infractions.red_lights == []
    ep = Episode(spec, DT, route_length=expert.route_progress())
    run(ep, BlindDriver(11.0))
    r = ep.result()
    assert len(ep.world.infractions.red_lights) == 1
    t, light = ep.world.infractions.red_lights[0]
    assert light.startswith('tl_') and 0 < t <= spec.duration
    assert (r.red_lights, r.collisions_vehicle, r.collisions_pedestrian) == (1, 0, 0)
    assert r.route_completion == pytest.approx(100.0)   # it did not wait, so it got further
    assert r.driving_score == pytest.approx(70.0)


def test_standing_still_completes_nothing():
    """green_light starts at rest at a red light that turns green: the expert drives off."""
    ep = Episode(EpisodeSpec('green_light', 1, 10.0), DT)
    assert ep.world.ego.v == 0.0
    assert ep.route_length > 10.0
    while not ep.done:
        ep.step(EgoControl(0.0, 0.0))
    r = ep.result()
    assert r.route_progress == pytest.approx(0.0, abs=1e-6)
    assert r.driving_score == pytest.approx(0.0, abs=1e-4)
    assert r.duration == pytest.approx(10.0)


def test_result_round_trips_and_aggregates():
    a = ScenarioResult('red_light', 0, 10.0, 100.0, 100.0, red_lights=1, latency_ms_p50=50.0)
    b = ScenarioResult('pedestrian', 1, 10.0, 80.0, 40.0, collisions_pedestrian=1)
    assert ScenarioResult.from_dict(a.to_dict()) == a
    assert math.isnan(ScenarioResult.from_dict(b.to_dict()).latency_ms_p95)
    s = summarize([a, b])
    assert s['driving_score'] == pytest.approx((70.0 + 25.0) / 2)
    assert s['route_completion'] == pytest.approx(75.0)
    assert s['red_lights'] == 1 and s['collisions_pedestrian'] == 1
    table = markdown_table([a, b])
    assert '| red_light | 0 | 100.0 |' in table and '**47.5**' in table
    assert a.planner_hz == pytest.approx(20.0)


def test_bad_specs_name_the_problem():
    with pytest.raises(ValueError, match='scenario'):
        EpisodeSpec('flying', 0)
    with pytest.raises(ValueError, match='duration'):
        EpisodeSpec('cruise', 0, 0.0)
    assert EpisodeSpec.parse('turn:7', 5.0) == EpisodeSpec('turn', 7, 5.0)
