"""A minimal client for each wire format, for tests that must speak all three."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import requests

from cloudgate.catalog import default_catalog
from cloudgate.protocol.eventstream import EventStreamDecoder, chunk_event
from cloudgate.protocol.sse import SSEParser

DOORS = ("anthropic", "vertex", "bedrock")


@dataclass
class Answer:
    """A decoded answer: status, the assembled message (or error body), the raw events."""

    status: int
    message: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.message.get("content", []) if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.message.get("content", []) if b.get("type") == "tool_use"]


def send(base_url: str, key: str, door: str, model: str, body: dict[str, Any], *, stream: bool) -> Answer:
    """Send a Messages `body` (no model, no stream) through `door`, decode the answer."""
    catalog = default_catalog()
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    doc = dict(body)
    if door == "anthropic":
        url = f"{base_url}/v1/messages"
        headers["x-api-key"] = key
        doc["model"] = model
        if stream:
            doc["stream"] = True
    elif door == "vertex":
        method = "streamRawPredict" if stream else "rawPredict"
        vertex_model = catalog.vertex_id(model)
        url = f"{base_url}/vertex_ai/v1/projects/p/locations/global/publishers/anthropic/models/{vertex_model}:{method}"
        headers["authorization"] = f"Bearer {key}"
        doc["anthropic_version"] = "vertex-2023-10-16"
        if stream:
            doc["stream"] = True
    else:
        action = "invoke-with-response-stream" if stream else "invoke"
        bedrock_model = catalog.bedrock_id(model, "us-east-1")
        url = f"{base_url}/bedrock/model/{quote(bedrock_model, safe='')}/{action}"
        headers["authorization"] = f"Bearer {key}"
        doc["anthropic_version"] = "bedrock-2023-05-31"
    resp = requests.post(url, data=orjson.dumps(doc), headers=headers, timeout=30)
    answer = Answer(resp.status_code, headers={k.lower(): v for k, v in resp.headers.items()})
    if resp.status_code != 200 or not stream:
        answer.message = resp.json() if resp.content else {}
        return answer
    if door == "bedrock":
        assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
        for frame in EventStreamDecoder().feed(resp.content):
            if frame.message_type == "event":
                answer.events.append(orjson.loads(chunk_event(frame)))
            else:
                answer.events.append(
                    {"type": "error", "exception": frame.event_type, "payload": orjson.loads(frame.payload)}
                )
    else:
        assert resp.headers["content-type"].startswith("text/event-stream")
        parser = SSEParser()
        answer.events = [orjson.loads(e.data) for e in parser.feed(resp.content) + parser.close()]
    answer.message = assemble(answer.events)
    return answer


def assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The message a stream of Messages API events describes."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event["message"])
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            delta = event["delta"]
            block = blocks[event["index"]]
            if delta["type"] == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "message_delta":
            message.update(event.get("delta", {}))
            message.setdefault("usage", {}).update(event.get("usage", {}))
    for index, text in partial.items():
        blocks[index]["input"] = orjson.loads(text) if text else {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def count_tokens(base_url: str, key: str, door: str, model: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Count tokens through `door`; returns (status, decoded answer)."""
    catalog = default_catalog()
    if door == "anthropic":
        resp = requests.post(f"{base_url}/v1/messages/count_tokens", json={**body, "model": model},
                             headers={"x-api-key": key}, timeout=30)  # fmt: skip
    elif door == "vertex":
        url = f"{base_url}/vertex_ai/v1/projects/p/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
        doc = {**body, "model": catalog.vertex_id(model), "anthropic_version": "vertex-2023-10-16"}
        resp = requests.post(url, json=doc, headers={"authorization": f"Bearer {key}"}, timeout=30)
    else:
        inner = orjson.dumps({**body, "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10})
        wrapped = {"input": {"invokeModel": {"body": base64.b64encode(inner).decode()}}}
        bedrock_model = quote(catalog.bedrock_id(model, "us-east-1"), safe="")
        resp = requests.post(f"{base_url}/bedrock/model/{bedrock_model}/count-tokens", json=wrapped,
                             headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    return resp.status_code, resp.json()
