"""Service calls from a test process that survive the DDS discovery race."""
import time


def call_until_answered(client, request, wait, timeout=60.0, per_try=10.0, took_effect=None):
    """
    Send `request` until an answer comes; return it.

    DDS matches a service's request and response channels separately: a client that already
    sees the server can send before the server's response writer has matched the client's
    reader, and that one answer is lost (CI saw /planner_node/get_state go unanswered for
    60 s). So the request is sent again after `per_try` seconds. Queries and parameter sets
    are safe to repeat; for a request that must run once (a lifecycle transition),
    `took_effect()` says whether the unanswered one ran, and then True stands for its answer.
    `wait(future, seconds) -> bool` waits while the caller's node is spun.
    """
    deadline = time.monotonic() + timeout
    assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name}: no server'
    while time.monotonic() < deadline:
        future = client.call_async(request)
        if wait(future, min(per_try, max(0.1, deadline - time.monotonic()))):
            return future.result()
        client.remove_pending_request(future)
        if took_effect is not None and took_effect():
            return True
    raise AssertionError(f'{client.srv_name}: no answer in {timeout:.0f} s')
