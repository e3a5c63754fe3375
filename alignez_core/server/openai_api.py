"""An OpenAI-compatible API with steering per request, served through the shared scheduler.

`POST /v1/chat/completions` (the whole `messages` list through the model's chat template, or the
base-model frame), `POST /v1/completions` (raw text), `GET /v1/models`, and `GET` / `POST
/v1/axes` (list, upload). A request steers with an extra field, `"steer": {"cheerful": 0.8}`
(with the `openai` client: `extra_body={"steer": {...}}`), naming shipped presets or uploaded
axes, each strength within the studio's slider range. Greedy unless `temperature` is given.
Errors come back as OpenAI's error JSON (`{"error": {"message", "type", "param", "code"}}`).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from alignez_core.engine import LoadedModel, Row, SamplingConfig
from alignez_core.engine.catalog import named_model
from alignez_core.errors import AlignEZError
from alignez_core.steering import SteerSettings
from alignez_core.steering.plan import combine, plan_edits

from .axis_store import AxisStore, UnknownAxisError
from .served import ServedModel

MAX_STRENGTH = 2.0  # the studio's slider range: ±1 is each axis's calibrated clean edge
MAX_NEW_TOKENS = 256
DEFAULT_NEW_TOKENS = 64
MAX_PROMPT_TOKENS = 2048
MAX_PROMPT_CHARS = 16000  # refused before tokenizing, so a huge body costs nothing
ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    """A refused request: the status and the fields of OpenAI's error object."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400) -> None:  # fmt: skip
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


@dataclass(frozen=True)
class Completion:
    """One request, checked: the row to decode and how, and what to answer with."""

    row: Row
    sampling: SamplingConfig
    prompt_tokens: int
    stop: tuple[str, ...]
    chat: bool
    include_usage: bool = False  # streamed: a last chunk with the token counts


def _include_usage(body: dict) -> bool:
    """`stream_options: {"include_usage": true}` (OpenAI's: only with `stream`)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not body.get("stream"):
        raise ApiError("stream_options is only allowed with stream: true.", "stream_options")
    usage = options.get("include_usage", False) if isinstance(options, dict) else None
    if not isinstance(usage, bool):
        raise ApiError('stream_options must be {"include_usage": true|false}.', "stream_options")
    return usage


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(f"{name} must be a finite number, got {value!r}.", name)
    if not low <= value <= high:
        raise ApiError(f"{name} must be in [{low:g}, {high:g}], got {value}.", name)
    return float(value)


def _sampling(body: dict) -> SamplingConfig:
    if body.get("n", 1) not in (1, None):
        raise ApiError("n must be 1: one answer per request (send more requests).", "n")
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    tokens = _number({"max_tokens": tokens}, "max_tokens", DEFAULT_NEW_TOKENS, 1, MAX_NEW_TOKENS)
    if tokens != int(tokens):
        raise ApiError(f"max_tokens must be a whole number, got {tokens}.", "max_tokens")
    return SamplingConfig(
        max_new_tokens=int(tokens),
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-6, 1.0),
        seed=int(_number(body, "seed", 0, 0, 2**31 - 1)),
    )


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ApiError("stop must be a string or a list of up to 4 non-empty strings.", "stop")
    if len(stops) > 4:
        raise ApiError("stop takes at most 4 strings.", "stop")
    return tuple(stops)


def _turns(body: dict) -> list[tuple[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages must be a non-empty list of {role, content}.", "messages")
    turns = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: only text is read
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role not in ROLES or not isinstance(content, str):
            raise ApiError(
                f"messages[{i}] must have a role in {ROLES} and text content.", "messages"
            )
        turns.append((role, content))
    if not any(role == "user" and text.strip() for role, text in turns):
        raise ApiError("messages has no user turn with text.", "messages")
    return turns


class OpenAIApi:
    """The routes' logic over one served model and one axis store."""

    def __init__(self, served: ServedModel, store: AxisStore | None = None) -> None:
        self.served = served
        self.store = store or AxisStore()

    def check_model(self, body: dict, lm: LoadedModel) -> None:
        asked = body.get("model")
        if asked in (None, "", lm.model_id):
            return
        named = named_model(asked) if isinstance(asked, str) else None
        if named is not None and named_model(lm.model_id) is named:
            return
        raise ApiError(
            f"This server has {lm.model_id} loaded, not {asked!r} (GET /v1/models).",
            "model", "model_not_found", 404,
        )  # fmt: skip

    def steered_row(self, lm: LoadedModel, text: str, query: str, steer: Any) -> Row:
        """The row for `text` (the model's whole input) with the request's axes combined."""
        if steer in (None, {}):
            return Row(text, raw=True)
        if not isinstance(steer, dict):
            raise ApiError('steer must be an object, e.g. {"cheerful": 0.8}.', "steer")
        axes = {}
        for name, strength in steer.items():
            value = _number({f"steer.{name}": strength}, f"steer.{name}", 0.0, -MAX_STRENGTH,
                            MAX_STRENGTH)  # fmt: skip
            try:
                pack = self.store.get(name, lm)
            except UnknownAxisError as exc:
                raise ApiError(str(exc), "steer", "unknown_axis") from None
            axes[pack] = value
        settings = SteerSettings()
        edits = plan_edits(lm, [query], axes, settings)[0]
        return Row(text, combine(edits, settings), raw=True)

    def completion(self, body: Any, chat: bool) -> Completion:
        if not isinstance(body, dict):
            raise ApiError("The request body must be a JSON object.")
        lm = self.served.lm
        self.check_model(body, lm)
        sampling, stop = _sampling(body), _stop(body)
        if chat:
            turns = _turns(body)
            query = next(text for role, text in reversed(turns) if role == "user")
            size = sum(len(text) for _, text in turns)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str) or not prompt.strip():
                raise ApiError("prompt must be one non-empty string.", "prompt")
            query, size = prompt, len(prompt)
        if size > MAX_PROMPT_CHARS:
            raise ApiError(
                f"The prompt is {size} characters; the cap is {MAX_PROMPT_CHARS}.",
                "messages" if chat else "prompt", "context_length_exceeded",
            )  # fmt: skip
        text = lm.format_conversation(turns) if chat else query
        prompt_tokens = len(lm.encode(text)["input_ids"])
        if prompt_tokens > MAX_PROMPT_TOKENS:
            raise ApiError(
                f"The prompt is {prompt_tokens} tokens; the cap is {MAX_PROMPT_TOKENS}.",
                "messages" if chat else "prompt", "context_length_exceeded",
            )  # fmt: skip
        row = self.steered_row(lm, text, query, body.get("steer"))
        return Completion(row, sampling, prompt_tokens, stop, chat, _include_usage(body))

    def texts(self, request: Completion) -> Generator[tuple[str, bool], None, None]:
        """(answer so far, ended at a stop string) as it grows; closing it cancels the row."""
        lm = self.served.lm
        stream = self.served.stream(lm, [request.row], request.sampling)
        try:
            for texts in stream:
                text = texts[0]
                cut = min((i for s in request.stop if (i := text.find(s)) >= 0), default=None)
                if cut is not None:
                    yield text[:cut], True
                    return
                yield text, False
        finally:
            stream.close()  # type: ignore[attr-defined]

    def finish(self, text: str, stopped: bool, request: Completion) -> tuple[str, int]:
        """The finish reason and completion tokens of a final answer."""
        tokens = len(self.served.lm.encode(text)["input_ids"]) if text else 0
        length = not stopped and tokens >= request.sampling.max_new_tokens
        return ("length" if length else "stop"), tokens


def _envelope(request: Completion, ident: str, model: str) -> dict:
    kind = "chat.completion" if request.chat else "text_completion"
    return {"id": ident, "object": kind, "created": int(time.time()), "model": model}


def _choice(request: Completion, text: str, finish: str | None, delta: bool) -> dict:
    if not request.chat:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    if delta:
        return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
    message = {"role": "assistant", "content": text}
    return {"index": 0, "message": message, "finish_reason": finish}


def _usage(request: Completion, tokens: int) -> dict:
    prompt = request.prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def openai_router(served: ServedModel, store: AxisStore | None = None) -> APIRouter:
    """The `/v1` routes, to mount on any FastAPI app (the studio mounts them beside its page)."""
    api = OpenAIApi(served, store)
    router = APIRouter(prefix="/v1")

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError("The request body is not valid JSON.") from None

    async def complete(request: Request, chat: bool):
        try:
            body = await body_of(request)
            checked = await run_in_threadpool(api.completion, body, chat)
        except ApiError as exc:
            return exc.response()
        except AlignEZError as exc:
            return ApiError(str(exc)).response()
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = _envelope(checked, ident, served.lm.model_id)
        if body.get("stream"):
            return StreamingResponse(_stream(checked, head), media_type="text/event-stream")
        text, stopped = "", False
        try:
            text, stopped = await run_in_threadpool(_last, api.texts(checked))
        except AlignEZError as exc:
            return ApiError(str(exc)).response()
        finish, tokens = api.finish(text, stopped, checked)
        choice = _choice(checked, text, finish, delta=False)
        return JSONResponse(head | {"choices": [choice], "usage": _usage(checked, tokens)})

    async def _stream(checked: Completion, head: dict) -> AsyncIterator[str]:
        """Server-sent chunks; a client that goes away cancels its row (the finally below)."""
        chunk = head | {"object": "chat.completion.chunk"} if checked.chat else head
        if checked.include_usage:  # every chunk says usage: null, the last one has the counts
            chunk = chunk | {"usage": None}
        texts = api.texts(checked)
        sent, stopped = "", False
        try:
            if checked.chat:
                first = {"index": 0, "delta": {"role": "assistant", "content": ""},
                         "finish_reason": None}  # fmt: skip
                yield _sse(chunk | {"choices": [first]})
            text = ""
            while (item := await run_in_threadpool(next, texts, None)) is not None:
                text, stopped = item
                shown = text.rstrip("\ufffd")  # a character whose bytes are still arriving
                if shown.startswith(sent) and len(shown) > len(sent):
                    piece, sent = shown[len(sent) :], shown
                    yield _sse(chunk | {"choices": [_choice(checked, piece, None, delta=True)]})
            if text.startswith(sent) and len(text) > len(sent):  # what the end made whole
                piece, sent = text[len(sent) :], text
                yield _sse(chunk | {"choices": [_choice(checked, piece, None, delta=True)]})
            finish, tokens = api.finish(sent, stopped, checked)
            yield _sse(chunk | {"choices": [_choice(checked, "", finish, delta=True)]})
            if checked.include_usage:
                yield _sse(chunk | {"choices": [], "usage": _usage(checked, tokens)})
            yield _sse("[DONE]")
        except AlignEZError as exc:
            yield _sse({"error": {"message": str(exc), "type": "server_error"}})
        finally:
            texts.close()

    @router.get("/models")
    def models() -> dict:
        lm = served.lm
        model = {"id": lm.model_id, "object": "model", "owned_by": "alignez"}
        return {"object": "list", "data": [model]}

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    @router.post("/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @router.get("/axes")
    def axes() -> dict:
        lm = served.lm
        return {"object": "list", "data": [_axis(name, api.store.get(name, lm))
                                           for name in api.store.names(lm)]}  # fmt: skip

    @router.post("/axes")
    async def upload(request: Request):
        data, filename = await _upload_of(request, api.store.max_upload_bytes)
        if isinstance(data, JSONResponse):
            return data
        try:
            name, pack = await run_in_threadpool(api.store.upload, data, filename, served.lm)
        except AlignEZError as exc:
            return ApiError(str(exc), "file", "invalid_axis").response()
        return _axis(name, pack)

    return router


def _last(texts: Iterator[tuple[str, bool]]) -> tuple[str, bool]:
    last = ("", False)
    for item in texts:
        last = item
    return last


def _axis(name: str, pack) -> dict:
    return {"id": name, "object": "axis", "name": pack.name, "negative": pack.axis.negative,
            "positive": pack.axis.positive, "model": pack.model_id}  # fmt: skip


async def _upload_of(request: Request, cap: int) -> tuple[Any, str]:
    """The uploaded bytes and file name: a multipart `file` field, or the raw body with
    `?filename=`. Bodies over `cap` are refused before they are read whole."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > cap + 4096:
        error = ApiError(f"The upload is {declared} bytes; the cap is {cap}.", "file",
                         "file_too_large", 413)  # fmt: skip
        return error.response(), ""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if file is None or isinstance(file, str):
            return ApiError("Send the axis file in a form field named file.", "file").response(), ""
        return await file.read(cap + 1), file.filename or "axis.safetensors"
    return await request.body(), request.query_params.get("filename", "axis.safetensors")


def openai_app(served: ServedModel, store: AxisStore | None = None) -> FastAPI:
    """A FastAPI app serving only the `/v1` routes (`alignez serve`)."""
    app = FastAPI(title="AlignEZ OpenAI-compatible API")
    app.include_router(openai_router(served, store))
    return app
