"""
The `openai` teacher: VLM-AD prompting of any OpenAI-compatible vision-language endpoint.

The front image, resized to `image_width`, gets the future path as a red line, is JPEG-encoded
and sent with the versioned prompt (Q1 + Q2 in one request, one JSON answer). A malformed answer
gets one repair request; a second bad answer, or a request that exhausted its retries, gives a
FAILED result with the reason. Valid answers are cached by image hash, prompt and model.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

from vlmad_ros.images import encode_jpeg, resize_rgb
from vlmad_ros.teacher.base import TeacherInput, TeacherResult, Usage
from vlmad_ros.teacher.budget import Price
from vlmad_ros.teacher.cache import AnswerCache, cache_key
from vlmad_ros.teacher.openai_client import ChatClient, image_content, RequestFailed
from vlmad_ros.teacher.overlay import draw_path
from vlmad_ros.teacher.parse import AnswerError, parse_answer
from vlmad_ros.teacher.prompt import Prompt


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """How the prompt image is made."""

    width: int = 1600            # shrink wider images to this width (aspect kept); 0 = as is
    jpeg_quality: int = 90
    detail: str = 'auto'         # OpenAI image detail: low | high | auto

    def __post_init__(self):
        if self.width < 0:
            raise ValueError(f'image width must be >= 0 (0 = keep), got {self.width}')
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in [1, 100], got {self.jpeg_quality}')
        if self.detail not in ('low', 'high', 'auto'):
            raise ValueError(f'detail must be low, high or auto, got {self.detail!r}')


def prompt_image(inp: TeacherInput, config: ImageConfig) -> bytes:
    """Make the JPEG the teacher is shown: resized front image with the red future path."""
    image, camera = inp.image, inp.camera
    if config.width and image.shape[1] > config.width:  # shrink only: upscaling adds no detail
        height = max(1, int(round(image.shape[0] * config.width / image.shape[1])))
        image = resize_rgb(image, (config.width, height))
        camera = camera.scaled(config.width, height)
    return encode_jpeg(draw_path(image, camera, inp.trajectory), quality=config.jpeg_quality)


class OpenAITeacher:
    """Teacher over a ChatClient. Thread-safe (the CLI calls it from a thread pool)."""

    def __init__(self, client: ChatClient, prompt: Prompt, image: ImageConfig = ImageConfig(),
                 price: Price = Price(), cache: Optional[AnswerCache] = None):
        self.client = client
        self.prompt = prompt
        self.image = image
        self.price = price
        self.cache = cache
        self.name = client.config.model
        self.prompt_version = prompt.version
        self.image_width = image.width  # decode hint for the caller

    def _usage(self, reply) -> Usage:
        return Usage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                     cost_usd=self.price.cost(reply.prompt_tokens, reply.completion_tokens),
                     requests=reply.attempts)

    def annotate(self, inp: TeacherInput) -> TeacherResult:
        jpeg = prompt_image(inp, self.image)
        key = cache_key(hashlib.sha256(jpeg).hexdigest(), self.prompt.version,
                        self.prompt.fingerprint, self.name)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                result = TeacherResult.from_dict(hit)
                result.usage, result.cached = Usage(), True
                return result
        messages = [
            {'role': 'system', 'content': self.prompt.system},
            {'role': 'user', 'content': [{'type': 'text', 'text': self.prompt.user},
                                         image_content(jpeg, self.image.detail)]},
        ]
        usage = Usage()
        error = None
        for turn in range(2):  # the answer, then one repair request
            try:
                reply = self.client.chat(messages)
            except RequestFailed as err:
                return TeacherResult.failed(err.reason, self.name, self.prompt_version, usage)
            usage.add(self._usage(reply))
            try:
                answer = parse_answer(reply.text, self.prompt.max_chars)
            except AnswerError as err:
                error = err
                messages = messages + [
                    {'role': 'assistant', 'content': reply.text},
                    {'role': 'user', 'content': self.prompt.repair(str(err))}]
                continue
            result = TeacherResult(
                current_action=answer.texts[0], future_action=answer.texts[1],
                reasoning=answer.texts[2], control_action=answer.labels[0],
                turn_action=answer.labels[1], lane_action=answer.labels[2],
                teacher=self.name, prompt_version=self.prompt_version, usage=usage)
            if self.cache is not None:
                stored = result.to_dict()
                stored['usage'] = {}
                self.cache.put(key, stored)
            return result
        return TeacherResult.failed(error.reason, self.name, self.prompt_version, usage)
