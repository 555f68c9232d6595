"""
A small client for OpenAI-compatible chat-completions endpoints (OpenAI, vLLM, Ollama, ...).

Standard library only (urllib). Images travel inline as base64 data URLs. Transient failures
(429, 5xx, timeouts, dropped connections) are retried with exponential backoff and jitter,
honouring Retry-After. Failures that no retry can fix (unreachable endpoint, key rejected, model
or URL unknown) raise FatalTeacherError so a run stops at once instead of failing every frame.
The API key is only ever put into the Authorization header: never logged, and cut out of every
error text and answer (servers echo it in error bodies). `structured` picks how the answer's JSON
schema is sent (STRUCTURED); a Budget, when given, is asked before every HTTP request.
"""
from __future__ import annotations

import base64
import dataclasses
import email.utils
import http.client
import json
import random
import socket
import threading
import time
from typing import List, Optional
import urllib.error
import urllib.request

from vlmad_ros.teacher.base import FatalTeacherError
from vlmad_ros.teacher.budget import Budget
from vlmad_ros.teacher.parse import answer_schema

RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)
FATAL_STATUS = {401: 'the API key was rejected', 403: 'access denied',
                404: 'the URL or model does not exist'}


def _openai_schema(schema: dict) -> dict:
    return {'response_format': {'type': 'json_schema', 'json_schema': {
        'name': 'vlmad_answer', 'strict': True, 'schema': schema}}}


# request body fields per way of asking for the answer schema (one name -> fields added):
# openai: response_format json_schema (OpenAI; also vLLM and Ollama's /v1 endpoints);
# vllm: vLLM's own structured outputs (structured_outputs, and guided_json for older vLLM);
# ollama: Ollama's `format` field with the schema; json: JSON mode without a schema; none.
STRUCTURED = {
    'openai': _openai_schema,
    'vllm': lambda schema: {'structured_outputs': {'json': schema}, 'guided_json': schema},
    'ollama': lambda schema: {'format': schema},
    'json': lambda schema: {'response_format': {'type': 'json_object'}},
    'none': lambda schema: {},
}


@dataclasses.dataclass
class ClientConfig:
    """Where and how to ask. Times in seconds."""

    base_url: str = 'https://api.openai.com/v1'
    model: str = 'gpt-4o'
    timeout: float = 60.0          # per HTTP request
    max_retries: int = 5           # retries after the first attempt (429/5xx/timeouts)
    backoff_base: float = 1.0      # first retry waits about this long, doubling after
    backoff_max: float = 60.0      # cap on any single wait, Retry-After included
    max_tokens: int = 500          # answer length limit
    temperature: float = 0.0
    structured: str = 'openai'     # how the answer schema is sent: one of STRUCTURED

    def __post_init__(self):
        if not self.base_url.startswith(('http://', 'https://')):
            raise ValueError(
                f'base_url must start with http:// or https://, got {self.base_url!r}')
        if not self.model:
            raise ValueError('model must be non-empty')
        if self.timeout <= 0:
            raise ValueError(f'timeout must be > 0 s, got {self.timeout}')
        if self.max_retries < 0:
            raise ValueError(f'max_retries must be >= 0, got {self.max_retries}')
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError('backoff_base and backoff_max must be >= 0')
        if self.max_tokens <= 0:
            raise ValueError(f'max_tokens must be > 0, got {self.max_tokens}')
        if self.structured not in STRUCTURED:
            raise ValueError(f'structured must be one of {sorted(STRUCTURED)}, '
                             f'got {self.structured!r}')

    @property
    def url(self) -> str:
        return self.base_url.rstrip('/') + '/chat/completions'


@dataclasses.dataclass
class ChatReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1


class RequestFailed(RuntimeError):
    """One request gave up after its retries; `reason` is a short key (http_429, timeout...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def image_content(jpeg: bytes, detail: str = 'auto') -> dict:
    """Make an image_url content part with the JPEG as a base64 data URL."""
    url = 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode('ascii')
    return {'type': 'image_url', 'image_url': {'url': url, 'detail': detail}}


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds, fractional allowed, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatClient:
    """Thread-safe: one request per call, no shared connection state."""

    def __init__(self, config: ClientConfig, api_key: Optional[str] = None,
                 rng: Optional[random.Random] = None, sleep=time.sleep,
                 schema: Optional[dict] = None, budget: Optional[Budget] = None):
        self.config = config
        self.schema = schema if schema is not None else answer_schema()
        self.budget = budget
        self._api_key = api_key or None
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the key
        return f'ChatClient(url={self.config.url!r}, model={self.config.model!r})'

    def _headers(self) -> dict:
        headers = {'Content-Type': 'application/json', 'Accept': 'application/json',
                   'User-Agent': 'vlmad_ros-annotator'}
        if self._api_key:
            headers['Authorization'] = f'Bearer {self._api_key}'
        return headers

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        """Exponential backoff with full jitter; Retry-After is a lower bound when given."""
        cfg = self.config
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        delay = min(cfg.backoff_max, cfg.backoff_base * (2 ** attempt)) * jitter
        if retry_after is not None:
            delay = max(delay, min(cfg.backoff_max, retry_after))
        return delay

    def chat(self, messages: List[dict]) -> ChatReply:
        """POST one chat completion; retries transient failures; returns the first choice."""
        cfg = self.config
        body = {'model': cfg.model, 'messages': messages, 'max_tokens': cfg.max_tokens,
                'temperature': cfg.temperature}
        body.update(STRUCTURED[cfg.structured](self.schema))
        data = json.dumps(body).encode()
        last_reason, last_detail = 'unknown', ''
        for attempt in range(cfg.max_retries + 1):
            retry_after = None
            request = urllib.request.Request(cfg.url, data=data, headers=self._headers(),
                                             method='POST')
            if self.budget is not None:
                self.budget.take_request()   # BudgetExhausted stops the run before asking
            try:
                with urllib.request.urlopen(request, timeout=cfg.timeout) as response:
                    payload = response.read()
                reply = self._parse(payload)
                reply.attempts = attempt + 1
                reply.text = self._redact(reply.text)
                if self.budget is not None:
                    self.budget.spend(reply.prompt_tokens, reply.completion_tokens)
                return reply
            except urllib.error.HTTPError as err:
                status = err.code
                detail = self._redact(_short(err.read() if err.fp else b'', limit=10_000))[:200]
                err.close()
                if status in FATAL_STATUS:
                    raise FatalTeacherError(
                        f'{cfg.url} answered HTTP {status}: {FATAL_STATUS[status]} '
                        f'(model {cfg.model!r}) {detail}') from None
                if status not in RETRY_STATUS:
                    raise RequestFailed(f'http_{status}', detail) from None
                last_reason, last_detail = f'http_{status}', detail
                retry_after = parse_retry_after(err.headers.get('Retry-After'))
            except urllib.error.URLError as err:
                if isinstance(err.reason, (socket.timeout, TimeoutError)):
                    last_reason, last_detail = 'timeout', f'no answer within {cfg.timeout} s'
                else:
                    last_reason, last_detail = 'unreachable', self._redact(str(err.reason))
            except (socket.timeout, TimeoutError):
                last_reason, last_detail = 'timeout', f'no answer within {cfg.timeout} s'
            except (ConnectionError, http.client.HTTPException) as err:
                last_reason, last_detail = 'connection', self._redact(
                    f'{type(err).__name__}: {err}')
            if last_reason == 'unreachable' and attempt >= min(cfg.max_retries, 2):
                break  # nothing listens there: say so quickly instead of backing off for long
            if attempt < cfg.max_retries:
                self._sleep(self._delay(attempt, retry_after))
        if last_reason == 'unreachable':
            raise FatalTeacherError(f'cannot reach {cfg.url}: {last_detail} '
                                    f'(check --base-url; {attempt + 1} attempts)')
        raise RequestFailed(last_reason, f'{last_detail} after {cfg.max_retries + 1} attempts')

    def _redact(self, text: str) -> str:
        """Cut the key out of text a server sent back (error bodies that echo the request)."""
        if self._api_key and text:
            return text.replace(self._api_key, '[API key]')
        return text

    def _parse(self, payload: bytes) -> ChatReply:
        try:
            obj = json.loads(payload)
            text = obj['choices'][0]['message']['content']
        except (ValueError, KeyError, IndexError, TypeError):
            detail = self._redact(_short(payload, limit=10_000))[:200]
            raise RequestFailed('bad_response', f'not a chat completion: {detail}') from None
        if isinstance(text, list):  # content parts
            text = ''.join(p.get('text', '') for p in text if isinstance(p, dict))
        usage = obj.get('usage') or {}
        return ChatReply(text=text or '', prompt_tokens=int(usage.get('prompt_tokens') or 0),
                         completion_tokens=int(usage.get('completion_tokens') or 0))


def _short(payload: bytes, limit: int = 200) -> str:
    text = payload.decode('utf-8', 'replace') if isinstance(payload, bytes) else str(payload)
    text = ' '.join(text.split())
    return text[:limit] + ('...' if len(text) > limit else '')
