"""Drive the fake Gemini server through the real google-genai SDK, the way the sweeper will.

These tests also pin down what the SDK raises or returns for each failure, so the
sweeper's error handling is written against observed behaviour, not guesses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from sweeper.testing import (
    PER_DAY_QUOTA,
    PER_MINUTE_QUOTA,
    Behavior,
    Blocked,
    Drop,
    FakeGemini,
    Finish,
    Garbage,
    Hang,
    Ok,
    TextOnly,
    error_for,
    parse_marker,
)

MODEL = "gemini-3.1-flash-image"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
T = TypeVar("T")


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


INPUT_PNG = _png()


@asynccontextmanager
async def sdk(
    fake: FakeGemini, api_key: str = "test-key"
) -> AsyncIterator[genai.client.AsyncClient]:
    """A client pinned to httpx (our own AsyncClient), closed explicitly like the product's."""
    http = httpx.AsyncClient(timeout=None)  # noqa: S113  asyncio.wait_for owns deadlines
    options = types.HttpOptions(base_url=fake.base_url, httpx_async_client=http)
    client = genai.Client(api_key=api_key, http_options=options)
    try:
        yield client.aio
    finally:
        await client.aio.aclose()
        client.close()
        await http.aclose()


async def call(
    aio: genai.client.AsyncClient, prompt: str, *, model: str = MODEL, aspect: str = "16:9"
) -> types.GenerateContentResponse:
    return await aio.models.generate_content(
        model=model,
        contents=[types.Part.from_bytes(data=INPUT_PNG, mime_type="image/png"), prompt],
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio=aspect)
        ),
    )


class Driver:
    """Runs SDK calls on one long-lived loop and client, as the sweeper does.

    Building a genai.Client costs ~85 ms (it loads CA bundles), so the module
    shares one; tests that need their own server or key build their own.
    """

    def __init__(self, runner: asyncio.Runner, aio: genai.client.AsyncClient) -> None:
        self.runner = runner
        self.aio = aio

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def generate(self, prompt: str, **kwargs: str) -> types.GenerateContentResponse:
        return self.run(call(self.aio, prompt, **kwargs))

    def error(self, prompt: str, **kwargs: str) -> errors.APIError:
        with pytest.raises(errors.APIError) as info:
            self.generate(prompt, **kwargs)
        return info.value


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as shared:
        yield shared


@pytest.fixture(scope="module")
def drive(runner: asyncio.Runner, server: FakeGemini) -> Iterator[Driver]:
    client = sdk(server)
    aio = runner.run(client.__aenter__())
    yield Driver(runner, aio)
    runner.run(client.__aexit__(None, None, None))


@pytest.fixture
def fake(server: FakeGemini) -> FakeGemini:
    """The shared server with every knob back at its default."""
    server.reset()
    server.latency = 0.0
    server.unknown_models.clear()
    return server


def image_of(response: types.GenerateContentResponse) -> tuple[Image.Image, bytes]:
    assert response.candidates
    assert response.candidates[0].content
    assert response.candidates[0].content.parts
    blob = response.candidates[0].content.parts[0].inline_data
    assert blob is not None
    assert blob.data is not None
    return Image.open(io.BytesIO(blob.data)), blob.data


def test_ok_returns_a_real_image_at_the_requested_aspect_ratio(
    fake: FakeGemini, drive: Driver
) -> None:
    response = drive.generate("a red fox")
    image, _ = image_of(response)
    assert (image.format, image.size) == ("PNG", (64, 36))
    assert response.candidates
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata
    assert response.usage_metadata.candidates_token_count == 1290
    portrait, _ = image_of(drive.generate("a red fox", aspect="9:16"))
    assert portrait.size == (36, 64)


def test_call_records_what_the_sdk_sent(fake: FakeGemini, drive: Driver) -> None:
    drive.generate("a red fox")
    [recorded] = fake.calls
    assert recorded.path == f"/v1/models/{MODEL}:generateContent"
    assert (recorded.model, recorded.prompt, recorded.aspect_ratio) == (MODEL, "a red fox", "16:9")
    assert recorded.response_modalities == ["IMAGE"]
    assert recorded.input_images == [("image/png", INPUT_PNG)]
    assert recorded.api_key == "test-key"
    assert recorded.started_at <= time.monotonic()


def test_every_image_differs(fake: FakeGemini, drive: Driver) -> None:
    images = [image_of(drive.generate("same prompt"))[1] for _ in range(3)]
    assert len({hashlib.sha256(data).hexdigest() for data in images}) == 3


def test_image_size_setting_and_scripted_jpeg(runner: asyncio.Runner) -> None:
    async def go(fake: FakeGemini) -> list[Image.Image]:
        async with sdk(fake) as aio:
            return [image_of(await call(aio, "fox"))[0] for _ in range(2)]

    with FakeGemini(image_size=(10, 20)) as fake:
        fake.script("fox", Ok(mime_type="image/jpeg", width=30, height=15))
        jpeg, png = runner.run(go(fake))
    assert (jpeg.format, jpeg.size) == ("JPEG", (30, 15))
    assert (png.format, png.size) == ("PNG", (10, 20))


@pytest.mark.parametrize(
    ("status", "grpc_status", "kind"),
    [
        (400, "INVALID_ARGUMENT", errors.ClientError),
        (403, "PERMISSION_DENIED", errors.ClientError),
        (404, "NOT_FOUND", errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", errors.ClientError),
        (500, "INTERNAL", errors.ServerError),
        (503, "UNAVAILABLE", errors.ServerError),
        (504, "DEADLINE_EXCEEDED", errors.ServerError),
    ],
)
def test_err_marker_raises_the_sdk_error(
    fake: FakeGemini, drive: Driver, status: int, grpc_status: str, kind: type[errors.APIError]
) -> None:
    err = drive.error(f"fox [err:{status}]")
    assert type(err) is kind
    assert (err.code, err.status) == (status, grpc_status)
    assert err.message
    assert err.details["error"]["code"] == status  # .details is the whole JSON body
    assert isinstance(err.response, httpx.Response)


def test_retry_delay_lands_in_details_as_retry_info(fake: FakeGemini, drive: Driver) -> None:
    err = drive.error("fox [err:429:2s]")
    assert err.details["error"]["details"] == [{"@type": RETRY_INFO, "retryDelay": "2s"}]


def test_retry_after_header_is_readable_from_the_response(fake: FakeGemini, drive: Driver) -> None:
    err = drive.error("fox [retryafter:7]")
    assert (err.code, err.response.headers["retry-after"]) == (429, "7")


@pytest.mark.parametrize(
    ("span", "quota_id"), [("day", PER_DAY_QUOTA), ("minute", PER_MINUTE_QUOTA)]
)
def test_quota_marker_names_the_quota(
    fake: FakeGemini, drive: Driver, span: str, quota_id: str
) -> None:
    err = drive.error(f"fox [quota:{span}]")
    [detail] = err.details["error"]["details"]
    assert detail["@type"] == QUOTA_FAILURE
    assert detail["violations"][0]["quotaId"] == quota_id


def test_blocked_prompt_has_no_candidates(fake: FakeGemini, drive: Driver) -> None:
    default = drive.generate("fox [block]")
    assert default.candidates is None
    assert default.prompt_feedback
    assert default.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    safety = drive.generate("fox [block:SAFETY]")
    assert safety.prompt_feedback
    assert safety.prompt_feedback.block_reason == types.BlockedReason.SAFETY


def test_finish_marker_gives_a_contentless_candidate(fake: FakeGemini, drive: Driver) -> None:
    for prompt, reason in [("[finish]", "IMAGE_SAFETY"), ("[finish:NO_IMAGE]", "NO_IMAGE")]:
        response = drive.generate(prompt)
        assert response.candidates
        assert response.candidates[0].finish_reason == types.FinishReason(reason)
        assert response.candidates[0].content is None


def test_text_marker_gives_text_and_no_image(fake: FakeGemini, drive: Driver) -> None:
    response = drive.generate("fox [text]")
    assert response.text == TextOnly().text
    assert response.candidates
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.parts
    assert all(part.inline_data is None for part in response.parts)


def test_drop_surfaces_as_httpx_remote_protocol_error(fake: FakeGemini, drive: Driver) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        drive.generate("fox [drop]")


def test_garbage_surfaces_as_json_decode_error(fake: FakeGemini, drive: Driver) -> None:
    with pytest.raises(json.JSONDecodeError):
        drive.generate("fox [garbage]")


def test_hang_times_out_and_the_server_still_stops_promptly(runner: asyncio.Runner) -> None:
    fake = FakeGemini().start()

    async def go() -> None:
        async with sdk(fake) as aio:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call(aio, "fox [hang]"), 0.3)

    runner.run(go())
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 0.5


def test_stop_drops_a_request_that_is_still_hanging(runner: asyncio.Runner) -> None:
    fake = FakeGemini().start()
    fake.script("fox", Hang())

    async def go() -> float:
        async with sdk(fake) as aio:
            task = asyncio.create_task(call(aio, "fox"))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.to_thread(fake.stop)
            with pytest.raises(httpx.RemoteProtocolError):
                await task
            return time.monotonic() - started

    assert runner.run(go()) < 0.5


def test_slow_marker_and_latency_delay_the_answer(fake: FakeGemini, drive: Driver) -> None:
    started = time.monotonic()
    image_of(drive.generate("fox [slow:0.2]"))
    assert time.monotonic() - started >= 0.2
    fake.latency = 0.15
    started = time.monotonic()
    image_of(drive.generate("fox"))
    assert time.monotonic() - started >= 0.15


def test_xn_limits_a_marker_to_the_first_calls_of_that_exact_prompt(
    fake: FakeGemini, drive: Driver
) -> None:
    async def concurrently(prompt: str, times: int) -> list[object]:
        calls = [call(drive.aio, prompt) for _ in range(times)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = drive.run(concurrently("fox [err:503x2]", 6))
    assert sum(isinstance(result, errors.ServerError) for result in results) == 2
    assert drive.error("other [err:503x2]").code == 503  # counted per prompt text
    [dropped, ok] = [drive.run(concurrently("fox [dropx1]", 1))[0] for _ in range(2)]
    assert isinstance(dropped, httpx.RemoteProtocolError)
    assert isinstance(ok, types.GenerateContentResponse)


def test_script_beats_markers_then_normal_behaviour_resumes(
    fake: FakeGemini, drive: Driver
) -> None:
    fake.script("fox", error_for(500), Blocked())
    assert drive.generate("plain cat").candidates  # no needle: untouched
    assert drive.error("a fox [text]").code == 500
    blocked = drive.generate("a fox [text]")
    assert blocked.prompt_feedback
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert drive.generate("a fox [text]").text == TextOnly().text
    assert drive.generate("a fox").candidates


def test_calls_for_and_reset(fake: FakeGemini, drive: Driver) -> None:
    fake.script("fox", Drop())
    drive.generate("a cat")
    drive.generate("a dog")
    assert [c.prompt for c in fake.calls_for("dog")] == ["a dog"]
    fake.reset()
    assert fake.calls == []
    assert drive.generate("a fox").candidates  # the script went too


def test_list_and_get_models(fake: FakeGemini, drive: Driver) -> None:
    async def go() -> tuple[list[str | None], str | None]:
        names = [model.name async for model in await drive.aio.models.list()]
        return names, (await drive.aio.models.get(model="gemini-3-pro-image")).name

    names, one = drive.run(go())
    assert names == ["models/gemini-3.1-flash-image", "models/gemini-3-pro-image"]
    assert one == "models/gemini-3-pro-image"


def test_bad_key_is_a_400_invalid_argument_like_google(
    fake: FakeGemini, runner: asyncio.Runner
) -> None:
    async def go() -> list[BaseException | types.GenerateContentResponse]:
        async with sdk(fake, "bad-key") as aio:
            listing = asyncio.create_task(aio.models.list())
            return await asyncio.gather(call(aio, "fox"), listing, return_exceptions=True)

    for err in runner.run(go()):
        assert isinstance(err, errors.ClientError)
        assert (err.code, err.status) == (400, "INVALID_ARGUMENT")
        assert err.message
        assert "API key not valid" in err.message


def test_unknown_model_is_404_not_found(fake: FakeGemini, drive: Driver) -> None:
    fake.unknown_models.add("gemini-0-image")
    err = drive.error("fox", model="gemini-0-image")
    assert (err.code, err.status) == (404, "NOT_FOUND")


def test_malformed_marker_fails_loudly(fake: FakeGemini, drive: Driver) -> None:
    err = drive.error("fox [err:lots]")
    assert (err.code, err.status) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("no marker", None),
        ("a [sic] quote", None),
        ("[text]", (TextOnly(), None)),
        ("[dropx1]", (Drop(), 1)),
        ("[garbage]", (Garbage(), None)),
        ("[hang]", (Hang(), None)),
        ("[hang:0.5x3]", (Hang(0.5), 3)),
        ("[slow:2]", (Hang(2.0), None)),
        ("[block:SAFETY]", (Blocked("SAFETY"), None)),
        ("[finish:NO_IMAGE]", (Finish("NO_IMAGE"), None)),
        ("[err:503x2]", (error_for(503), 2)),
        ("[err:429:1sx2]", (error_for(429, retry_delay="1s"), 2)),
        ("[retryafter:5]", (error_for(429, retry_after="5"), None)),
        ("[quota:day]", (error_for(429, quota_id=PER_DAY_QUOTA), None)),
    ],
)
def test_parse_marker(prompt: str, expected: tuple[Behavior, int | None] | None) -> None:
    assert parse_marker(f"draw {prompt} please") == expected


def test_raw_wire_format_camel_case_and_http_1_1(fake: FakeGemini) -> None:
    """Clients other than the SDK may send mimeType and standard base64; both decode."""
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(INPUT_PNG).decode()}}
    body = {"contents": [{"parts": [part, {"text": "fox"}], "role": "user"}]}
    url = f"{fake.base_url}/v1beta/models/{MODEL}:generateContent"
    with httpx.Client() as http:
        first = http.post(url, json=body, headers={"x-goog-api-key": "k"})
        second = http.post(url, content=b"{nope", headers={"x-goog-api-key": "k"})
    assert (first.status_code, first.http_version) == (200, "HTTP/1.1")
    assert first.headers["content-length"] == str(len(first.content))
    assert first.json()["modelVersion"] == MODEL
    assert fake.calls[0].input_images == [("image/png", INPUT_PNG)]
    assert fake.calls[0].aspect_ratio is None
    assert second.json()["error"]["status"] == "INVALID_ARGUMENT"
