"""A fake Gemini REST server, so tests drive the real google-genai SDK offline.

It answers ``POST /{version}/models/{model}:generateContent`` and
``GET /{version}/models[/{model}]`` the way Google does; point the SDK at it
with ``HttpOptions(base_url=fake.base_url)``. Tests pick misbehaviour with
:meth:`FakeGemini.script` or, when the sweeper runs as a subprocess, with a
``[kind:arg...xN]`` marker in the prompt (see :func:`parse_marker`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, assert_never
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

from .gemini_behaviors import (
    BAD_KEY,
    DEFAULT_MODELS,
    Behavior,
    Blocked,
    Call,
    Drop,
    Error,
    Finish,
    Garbage,
    Hang,
    Ok,
    TextOnly,
    error_for,
    parse_marker,
)

_STEP = 0.02  # how often a sleeping answer checks for stop() or a departed client
_LONG_SIDE = 64  # small images keep tests fast
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_GENERATE = re.compile(r"/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent")
_MODELS = re.compile(r"/[^/]+/models(?:/(?P<model>[^/:]+))?")
_RPC = "type.googleapis.com/google.rpc."
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: Headers = ()


def _json_reply(status: int, payload: Any, headers: Headers = ()) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=headers)


def _error_reply(err: Error, *extra: dict[str, Any]) -> _Reply:
    """Google's error envelope; the SDK exposes the whole body as APIError.details."""
    details = list(extra)
    if err.quota_id:
        metric = "generativelanguage.googleapis.com/generate_content_requests"
        violation = {"quotaMetric": metric, "quotaId": err.quota_id}
        details.append({"@type": f"{_RPC}QuotaFailure", "violations": [violation]})
    if err.retry_delay:
        details.append({"@type": f"{_RPC}RetryInfo", "retryDelay": err.retry_delay})
    error: dict[str, Any] = {"code": err.status, "message": err.message, "status": err.grpc_status}
    if details:
        error["details"] = details
    headers = (("Retry-After", err.retry_after),) if err.retry_after else ()
    return _json_reply(err.status, {"error": error}, headers)


def _key_refusal(api_key: str | None) -> _Reply | None:
    """Refuse a missing or bad key as Google does (a bad key is 400, not 401)."""
    if not api_key:
        return _error_reply(error_for(403, "Method doesn't allow unregistered callers."))
    if api_key != BAD_KEY:
        return None
    info = {"@type": f"{_RPC}ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
    return _error_reply(error_for(400, "API key not valid. Please pass a valid API key."), info)


def _b64decode(data: str) -> bytes:
    """Decode standard or URL-safe base64 (the SDK sends URL-safe, Google sends standard)."""
    data = data.translate(str.maketrans("-_", "+/"))
    return base64.b64decode(data + "=" * (-len(data) % 4))


def _parse_call(path: str, model: str, api_key: str | None, request: dict[str, Any]) -> Call:
    texts: list[str] = []
    images: list[tuple[str, bytes]] = []
    for content in request.get("contents") or []:
        for part in content.get("parts") or []:
            if "text" in part:
                texts.append(part["text"])
            if inline := part.get("inlineData") or part.get("inline_data"):
                mime = inline.get("mimeType") or inline.get("mime_type") or ""
                images.append((mime, _b64decode(inline.get("data", ""))))
    config = request.get("generationConfig") or {}
    ratio = (config.get("imageConfig") or {}).get("aspectRatio")
    modalities = list(config.get("responseModalities") or [])
    prompt = "\n".join(texts)
    return Call(path, model, prompt, ratio, modalities, images, api_key, time.monotonic())


def _aspect_size(ratio: str | None) -> tuple[int, int]:
    """A small size with this "W:H" ratio; square when the ratio is missing or odd."""
    try:
        w, h = (float(side) for side in (ratio or "1:1").split(":"))
        scale = _LONG_SIDE / max(w, h)
    except (ValueError, ZeroDivisionError):
        return _LONG_SIDE, _LONG_SIDE
    return max(1, round(w * scale)), max(1, round(h * scale))


def _draw(size: tuple[int, int], mime_type: str, serial: int) -> bytes:
    """An image whose colour encodes the serial, so every call's bytes (and sha256) differ."""
    image = Image.new("RGB", size, ((serial * 67) % 256, (serial // 256 * 31) % 256, 160))
    ImageDraw.Draw(image).line([(0, 0), size], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format=_FORMATS.get(mime_type, "PNG"))
    return out.getvalue()


def _body(call: Call, output_tokens: int, candidate: dict[str, Any] | None) -> dict[str, Any]:
    """A 200 body: the candidate (none when blocked), usage and model version."""
    prompt_tokens = max(1, len(call.prompt) // 4) + 258 * len(call.input_images)
    body: dict[str, Any] = {"candidates": [{**candidate, "index": 0}]} if candidate else {}
    body["usageMetadata"] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }
    return {**body, "modelVersion": call.model}


def _model_info(model: str) -> dict[str, Any]:
    methods = ["generateContent", "countTokens"]
    return {"name": f"models/{model}", "displayName": model, "supportedGenerationMethods": methods}


def _client_gone(conn: socket.socket) -> bool:
    """A socket readable mid-request means EOF or reset: httpx never pipelines."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _shutdown(conn: socket.socket) -> None:
    """Unblock a handler thread reading from this socket."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGemini) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP/1.1 keep-alive transport; FakeGemini decides every answer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms ACK stalls

    @property
    def fake(self) -> FakeGemini:
        assert isinstance(self.server, _Server)
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._untrack(self.connection)

    def do_GET(self) -> None:
        path, key = urlsplit(self.path).path, self.headers.get("x-goog-api-key")
        self._answer(lambda: self.fake._get(path, key, self.connection))

    def do_POST(self) -> None:
        path, key = urlsplit(self.path).path, self.headers.get("x-goog-api-key")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(lambda: self.fake._post(path, key, body, self.connection))

    def _answer(self, decide: Callable[[], _Reply | None]) -> None:
        try:
            reply = decide()
        except Exception as exc:  # noqa: BLE001 - a fake bug must reach the test as an HTTP error
            reply = _error_reply(error_for(500, f"fake Gemini crashed: {exc!r}"))
        if reply is None:  # Drop, stop(), or the client left: no response at all
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up first
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read calls, not access logs."""


class FakeGemini:
    """A local Gemini endpoint with scripted and prompt-marked misbehaviour."""

    def __init__(self, *, latency: float = 0.0, image_size: tuple[int, int] | None = None) -> None:
        self.latency = latency
        self.image_size = image_size
        self.calls: list[Call] = []
        self.models: list[str] = list(DEFAULT_MODELS)
        self.unknown_models: set[str] = set()
        self._lock = threading.Lock()
        self._scripts: list[tuple[str, deque[Behavior]]] = []
        self._seen: dict[str, int] = {}
        self._serials = itertools.count()
        self._stopping = threading.Event()
        self._open: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGemini is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGemini:
        if self._server is not None:
            raise RuntimeError("FakeGemini is already started")
        self._stopping.clear()
        self._server = _Server(self)
        serve = self._server.serve_forever
        threading.Thread(target=serve, args=(0.05,), name="fake-gemini", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop promptly: wake sleeping answers, cut keep-alive sockets, join handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()  # returns once serve_forever has exited
        server.server_close()
        with self._lock:
            open_now = dict(self._open)
        for conn in open_now:
            _shutdown(conn)
        deadline = time.monotonic() + 2.0
        for thread in open_now.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, prompt_contains: str, *behaviors: Behavior) -> None:
        """Queue behaviours, one per call, for the next calls whose prompt contains this."""
        with self._lock:
            for needle, queue in self._scripts:
                if needle == prompt_contains:
                    queue.extend(behaviors)
                    return
            self._scripts.append((prompt_contains, deque(behaviors)))

    def calls_for(self, prompt_contains: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if prompt_contains in call.prompt]

    def reset(self) -> None:
        """Forget calls, scripts and xN counts (latency and model lists stay)."""
        with self._lock:
            self.calls.clear()
            self._scripts.clear()
            self._seen.clear()

    # Below: called from handler threads.

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._open[conn] = threading.current_thread()
        if self._stopping.is_set():
            _shutdown(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.pop(conn, None)

    def _pause(self, seconds: float, conn: socket.socket) -> bool:
        """Sleep in small steps; False if stop() began or the client hung up meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, _STEP)) or _client_gone(conn):
                return False
        return not self._stopping.is_set()

    def _get(self, path: str, api_key: str | None, conn: socket.socket) -> _Reply | None:
        if not self._pause(self.latency, conn):
            return None
        if (match := _MODELS.fullmatch(path)) is None:
            return _error_reply(error_for(404, f"Method not found: GET {path}"))
        if refusal := _key_refusal(api_key):
            return refusal
        infos = {model: _model_info(model) for model in self.models}
        if match["model"] is None:
            return _json_reply(200, {"models": list(infos.values())})
        if match["model"] in infos:
            return _json_reply(200, infos[match["model"]])
        return _error_reply(error_for(404, f"models/{match['model']} is not found"))

    def _post(
        self, path: str, api_key: str | None, body: bytes, conn: socket.socket
    ) -> _Reply | None:
        if (match := _GENERATE.fullmatch(path)) is None:
            return _error_reply(error_for(404, f"Method not found: POST {path}"))
        try:
            call = _parse_call(path, match["model"], api_key, json.loads(body))
        except ValueError:
            return _error_reply(error_for(400, "Invalid JSON payload received."))
        with self._lock:
            self.calls.append(call)
        if not self._pause(self.latency, conn):
            return None
        if refusal := _key_refusal(api_key):
            return refusal
        if call.model in self.unknown_models:
            message = f"models/{call.model} is not found for API version {match['version']}"
            return _error_reply(error_for(404, f"{message}, or is not supported."))
        try:
            behavior = self._choose(call.prompt)
        except ValueError as exc:
            return _error_reply(error_for(400, str(exc)))
        return self._perform(behavior, call, conn)

    def _choose(self, prompt: str) -> Behavior:
        """Scripts first, then the prompt marker (within its xN limit), else Ok."""
        with self._lock:
            seen = self._seen[prompt] = self._seen.get(prompt, 0) + 1
            for needle, queue in self._scripts:
                if needle in prompt and queue:
                    return queue.popleft()
        marker = parse_marker(prompt)
        if marker is None or (marker[1] is not None and seen > marker[1]):
            return Ok()
        return marker[0]

    def _perform(self, behavior: Behavior, call: Call, conn: socket.socket) -> _Reply | None:
        match behavior:
            case Ok():
                return self._image(behavior, call)
            case Error():
                return _error_reply(behavior)
            case Blocked(reason=reason):
                feedback = {"promptFeedback": {"blockReason": reason}}
                return _json_reply(200, {**feedback, **_body(call, 0, None)})
            case Finish(reason=reason):
                return _json_reply(200, _body(call, 0, {"finishReason": reason}))
            case TextOnly(text=text):
                content = {"parts": [{"text": text}], "role": "model"}
                candidate = {"content": content, "finishReason": "STOP"}
                return _json_reply(200, _body(call, len(text) // 4 + 1, candidate))
            case Hang(seconds=seconds):
                return self._image(Ok(), call) if self._pause(seconds, conn) else None
            case Drop():
                return None
            case Garbage():
                return _Reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            case _:
                assert_never(behavior)

    def _image(self, ok: Ok, call: Call) -> _Reply:
        width, height = self.image_size or _aspect_size(call.aspect_ratio)
        data = _draw((ok.width or width, ok.height or height), ok.mime_type, next(self._serials))
        inline = {"mimeType": ok.mime_type, "data": base64.b64encode(data).decode("ascii")}
        content = {"parts": [{"inlineData": inline}], "role": "model"}
        candidate = {"content": content, "finishReason": "STOP"}
        return _json_reply(200, _body(call, 1290, candidate))
