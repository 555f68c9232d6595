"""The openai teacher against a loopback OpenAI-compatible server (real HTTP, real client)."""
import json
import time

import helpers_annotate as h
import numpy as np
import pytest
from vlmad_ros.rig import load_rig
from vlmad_ros.teacher.base import FatalTeacherError, Status, TeacherInput
from vlmad_ros.teacher.budget import Budget, BudgetExhausted
from vlmad_ros.teacher.cache import AnswerCache
from vlmad_ros.teacher.openai_client import ChatClient, ClientConfig, parse_retry_after, \
    RequestFailed
from vlmad_ros.teacher.openai_teacher import ImageConfig, OpenAITeacher, Price
from vlmad_ros.teacher.overlay import red_mask
from vlmad_ros.teacher.prompt import load_prompt
from vlmad_ros.types import Trajectory

KEY = 'sk-test-0123456789abcdef'
T = 0.5 * np.arange(1, 7)


def teacher(url, cache=None, **cfg):
    args = {'base_url': url, 'model': 'gpt-4o', 'timeout': 2.0, 'max_retries': 3,
            'backoff_base': 0.01, 'backoff_max': 0.5}
    args.update(cfg)
    return OpenAITeacher(ChatClient(ClientConfig(**args), api_key=KEY), load_prompt(),
                         image=ImageConfig(width=320), price=Price(2.5, 10.0), cache=cache)


def frame(stamp=0, v=8.0):
    cam = load_rig('nuscenes')['CAM_FRONT'].scaled(640, 360)
    return TeacherInput(image=h.road_image(640, 360, stamp), camera=cam,
                        trajectory=Trajectory.from_xy(np.stack([v * T, 0 * T], 1)), speed=v,
                        stamp_ns=stamp)


def test_good_answer_carries_image_with_red_path_and_bearer_key():
    with h.ChatServer() as srv:
        res = teacher(srv.base_url).annotate(frame())
    assert res.status == Status.OK and res.teacher == 'gpt-4o'
    assert (res.control_action, res.turn_action, res.lane_action) == (0, 3, 4)
    assert res.current_action == h.GOOD_ANSWER['current_action']
    assert res.usage.prompt_tokens == 1000 and res.usage.completion_tokens == 60
    assert res.usage.cost_usd == pytest.approx((1000 * 2.5 + 60 * 10.0) / 1e6)
    (req,) = srv.requests
    assert req['path'] == '/v1/chat/completions'
    assert req['headers']['Authorization'] == f'Bearer {KEY}'
    assert req['body']['model'] == 'gpt-4o'
    img = h.request_image(req)
    assert img.shape == (180, 320, 3) and red_mask(img).sum() > 20


def test_broken_json_gets_one_repair_then_fails():
    answers = ['{"current_action": "oops', json.dumps(h.GOOD_ANSWER)]

    def script(req):
        return 200, {}, h.completion(answers[min(req['index'], 1)])
    with h.ChatServer(script) as srv:
        res = teacher(srv.base_url).annotate(frame())
    assert res.ok and len(srv.requests) == 2
    repair = srv.requests[1]['body']['messages']
    assert repair[-2]['role'] == 'assistant' and 'invalid_json' in repair[-1]['content']
    assert res.usage.prompt_tokens == 2000

    with h.ChatServer(lambda r: (200, {}, h.completion('not json at all'))) as srv:
        res = teacher(srv.base_url).annotate(frame())
    assert res.status == Status.FAILED and res.failure_reason == 'invalid_json'
    assert len(srv.requests) == 2
    assert (res.control_action, res.turn_action, res.lane_action) == (255, 255, 255)
    assert res.current_action == '' and res.to_record() is None


def test_labels_outside_the_sets_fail():
    bad = json.dumps(dict(h.GOOD_ANSWER, control_action='accelerate hard'))
    with h.ChatServer(lambda r: (200, {}, h.completion(bad))) as srv:
        res = teacher(srv.base_url).annotate(frame())
    assert res.status == Status.FAILED and res.failure_reason == 'invalid_label'
    assert res.control_action == 255


def test_429_with_retry_after_is_honoured():
    def script(req):
        if req['index'] == 0:
            return 429, {'Retry-After': '0.4'}, {'error': {'message': 'rate limited'}}
        return h.good()
    with h.ChatServer(script) as srv:
        res = teacher(srv.base_url).annotate(frame())
    assert res.ok and len(srv.requests) == 2
    assert srv.requests[1]['time'] - srv.requests[0]['time'] >= 0.38
    assert res.usage.requests == 2
    assert parse_retry_after('2') == 2.0 and parse_retry_after(None) is None
    assert parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT') == 0.0


def test_500s_are_retried_then_fail_with_the_status():
    def script(req):
        return (500, {}, b'oops') if req['index'] < 2 else h.good()
    with h.ChatServer(script) as srv:
        assert teacher(srv.base_url).annotate(frame()).ok
    with h.ChatServer(lambda r: (503, {}, b'down')) as srv:
        res = teacher(srv.base_url, max_retries=2).annotate(frame())
    assert res.failure_reason == 'http_503' and len(srv.requests) == 3


def test_timeouts_are_retried_then_fail():
    def script(req):
        return ('sleep', 2.0, h.good()) if req['index'] == 0 else h.good()
    with h.ChatServer(script) as srv:
        res = teacher(srv.base_url, timeout=0.8).annotate(frame())
    assert res.ok and len(srv.requests) == 2
    with h.ChatServer(lambda r: ('sleep', 1.0, h.good())) as srv:
        res = teacher(srv.base_url, timeout=0.2, max_retries=1).annotate(frame())
    assert res.failure_reason == 'timeout'


def test_dead_endpoint_and_rejected_key_are_fatal():
    url = f'http://127.0.0.1:{h.dead_port()}/v1'
    t0 = time.monotonic()
    with pytest.raises(FatalTeacherError, match='cannot reach') as err:
        teacher(url, max_retries=5).annotate(frame())
    assert time.monotonic() - t0 < 5 and KEY not in str(err.value)
    with h.ChatServer(lambda r: (401, {}, {'error': 'bad key'})) as srv:
        with pytest.raises(FatalTeacherError, match='rejected') as err:
            teacher(srv.base_url).annotate(frame())
    assert len(srv.requests) == 1 and KEY not in str(err.value)
    assert KEY not in repr(teacher(url).client)


def test_cache_hits_skip_the_request(tmp_path):
    cache = AnswerCache(tmp_path / 'cache')
    with h.ChatServer() as srv:
        first = teacher(srv.base_url, cache=cache).annotate(frame())
        second = teacher(srv.base_url, cache=cache).annotate(frame())
        other_model = teacher(srv.base_url, cache=cache, model='qwen2.5-vl').annotate(frame())
        other_path = teacher(srv.base_url, cache=cache).annotate(frame(v=3.0))
    assert first.ok and not first.cached
    assert second.cached and second.usage.prompt_tokens == 0
    assert second.current_action == first.current_action
    assert not other_model.cached and not other_path.cached
    assert len(srv.requests) == 3
    # Failed answers are not cached: a re-run asks again.
    with h.ChatServer(lambda r: (200, {}, h.completion('nope'))) as srv:
        assert not teacher(srv.base_url, cache=cache).annotate(frame(stamp=7)).ok
        assert not teacher(srv.base_url, cache=cache).annotate(frame(stamp=7)).ok
    assert len(srv.requests) == 4


@pytest.mark.parametrize('mode', ['openai', 'vllm', 'ollama', 'json', 'none'])
def test_structured_modes_put_the_answer_schema_in_the_request(mode):
    from vlmad_ros import labels
    with h.ChatServer() as srv:
        assert teacher(srv.base_url, structured=mode).annotate(frame()).ok
    (req,) = srv.requests
    body = req['body']
    schema = {
        'openai': lambda: body['response_format']['json_schema']['schema'],
        'vllm': lambda: body['structured_outputs']['json'],
        'ollama': lambda: body['format'],
    }.get(mode, lambda: None)()
    if mode == 'openai':
        assert body['response_format']['type'] == 'json_schema'
        assert body['response_format']['json_schema']['strict'] is True
    if mode == 'vllm':
        assert body['guided_json'] == schema
    if schema is not None:
        assert set(schema['required']) == set(labels.TEXT_FIELDS) | set(labels.LABEL_SETS)
        assert schema['additionalProperties'] is False
        for key, values in labels.LABEL_SETS.items():
            assert schema['properties'][key]['enum'] == list(values)
    asked = {k for k in ('response_format', 'structured_outputs', 'guided_json', 'format')
             if k in body}
    assert asked == {'openai': {'response_format'}, 'vllm': {'structured_outputs', 'guided_json'},
                     'ollama': {'format'}, 'json': {'response_format'}, 'none': set()}[mode]
    if mode == 'json':
        assert body['response_format'] == {'type': 'json_object'}
    with pytest.raises(ValueError, match='structured'):
        ClientConfig(structured='xml')


def test_key_echoed_by_the_server_is_cut_from_errors_and_answers():
    echo = {'error': {'message': f'Incorrect API key provided: {KEY}'}}
    with h.ChatServer(lambda r: (401, {}, echo)) as srv:
        with pytest.raises(FatalTeacherError, match='rejected') as err:
            teacher(srv.base_url).annotate(frame())
    assert KEY not in str(err.value) and '[API key]' in str(err.value)
    client = ChatClient(ClientConfig(base_url='http://127.0.0.1:1/v1', max_retries=0), KEY)
    with h.ChatServer(lambda r: (400, {}, echo)) as srv:
        client.config.base_url = srv.base_url
        with pytest.raises(RequestFailed) as err:
            client.chat([{'role': 'user', 'content': 'hi'}])
    assert KEY not in str(err.value)
    with h.ChatServer(lambda r: (200, {}, {'not': f'a completion {KEY}'})) as srv:
        client.config.base_url = srv.base_url
        with pytest.raises(RequestFailed, match='bad_response') as err:
            client.chat([{'role': 'user', 'content': 'hi'}])
    assert KEY not in str(err.value)
    with h.ChatServer(lambda r: (200, {}, h.completion(f'your key is {KEY}'))) as srv:
        client.config.base_url = srv.base_url
        assert KEY not in client.chat([{'role': 'user', 'content': 'hi'}]).text


def test_budget_counts_every_request_and_the_cost():
    budget = Budget(max_requests=3)
    client = ChatClient(ClientConfig(base_url='http://127.0.0.1:1/v1', max_retries=5,
                                     backoff_base=0.0), KEY, budget=budget)
    with h.ChatServer(lambda r: (503, {}, b'busy')) as srv:
        client.config.base_url = srv.base_url
        with pytest.raises(BudgetExhausted, match='max-requests 3'):
            client.chat([{'role': 'user', 'content': 'hi'}])
    assert len(srv.requests) == 3 and budget.requests == 3, 'retries count'
    budget = Budget(max_cost_usd=2.5, price=Price(1000.0, 0.0))  # 1000 tokens: 1 USD a reply
    client = ChatClient(ClientConfig(base_url='http://127.0.0.1:1/v1'), KEY, budget=budget)
    with h.ChatServer() as srv:
        client.config.base_url = srv.base_url
        for _ in range(3):
            client.chat([{'role': 'user', 'content': 'hi'}])
        with pytest.raises(BudgetExhausted, match='max-cost'):
            client.chat([{'role': 'user', 'content': 'hi'}])
    assert len(srv.requests) == 3 and budget.cost_usd == pytest.approx(3.0)
    with pytest.raises(ValueError, match='needs prices'):
        Budget(max_cost_usd=1.0)
