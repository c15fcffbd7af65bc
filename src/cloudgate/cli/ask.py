"""`cloudgate ask "prompt"`: one request through Claude Code's configuration, as it resolves.

Direct to the cloud or through a gateway, whatever the environment and settings files say.
The answer streams to stdout as it arrives; model, platform, region, tokens and an estimated
cost follow on stderr, so `cloudgate ask ... > answer.txt` keeps only the answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from cloudgate.clientconfig import ModelChoice, ResolvedConfig, effective_base_url, resolve

DEFAULT_MAX_TOKENS = 1024


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "ask",
        help="send one prompt through Claude Code's configuration and stream the answer",
        description="Send one prompt with Claude Code's resolved configuration (direct to the cloud "
        "or through a gateway) and stream the answer; model, region, tokens and cost follow on stderr.",
    )
    p.add_argument("prompt", nargs="?", help="the prompt (default, or '-': read standard input)")
    p.add_argument("--model", "-m", help="a model name, platform id or alias (default: the main model)")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="answer length limit")
    p.add_argument(
        "--settings", metavar="FILE", help="a settings file (or JSON) as Claude Code's --settings takes"
    )
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    p.add_argument("--json", action="store_true", help="print one JSON document (answer, usage, cost)")
    p.set_defaults(run=run)


@dataclass(slots=True)
class Answer:
    """What came back: text, usage, the model that answered, and the response headers."""

    text: str
    model: str
    stop_reason: str | None
    usage: dict[str, int]
    headers: dict[str, str]


def run(args: argparse.Namespace) -> int:
    """Run `cloudgate ask`."""
    prompt = args.prompt
    if prompt is None or prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        print("cloudgate ask: nothing to ask (give a prompt or pipe one in)", file=sys.stderr)
        return 2
    resolved = resolve(settings_file=args.settings)
    try:
        from cloudgate import client as sdk
    except ImportError as exc:
        print(
            f'cloudgate ask: needs the anthropic SDK ({exc}): pip install "anthropic[vertex,bedrock]"',
            file=sys.stderr,
        )
        return 1
    choice = sdk.model_choice(resolved, args.model)
    endpoint = effective_base_url(resolved.platform, resolved.base_url, choice.region)
    stream = not (args.no_stream or args.json)
    try:
        client = sdk.client_from_claude_code(resolved=resolved, model=args.model, max_retries=2)
        answer = _send(client, choice, prompt, args.max_tokens, stream=stream)
    except Exception as exc:  # every failure becomes one line; see explain_error
        message = explain_error(exc, resolved, choice, endpoint)
        if message is None:
            raise
        if stream:
            sys.stdout.write("\n")
        print(f"cloudgate ask: {message}", file=sys.stderr)
        return 1
    cost, cost_source = estimate_cost(answer, resolved, choice)
    if args.json:
        doc = {
            "text": answer.text,
            "model": answer.model,
            "platform": resolved.platform,
            "platform_id": choice.platform_id,
            "region": choice.region,
            "endpoint": endpoint,
            "stop_reason": answer.stop_reason,
            "usage": answer.usage,
            "cost_usd": cost,
            "cost_source": cost_source,
            "request_id": answer.headers.get("x-cloudgate-request-id") or answer.headers.get("request-id"),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    if not stream:
        sys.stdout.write(answer.text)
    sys.stdout.write("\n")
    sys.stdout.flush()
    print(_summary(answer, resolved, choice, endpoint, cost, cost_source), file=sys.stderr)
    return 0


def _send(client: Any, choice: ModelChoice, prompt: str, max_tokens: int, *, stream: bool) -> Answer:
    from cloudgate.routing.router import ONE_M_BETA

    request: dict[str, Any] = {
        "model": choice.platform_id,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if choice.one_m:
        request["extra_headers"] = {"anthropic-beta": ONE_M_BETA}
    if stream:
        with client.messages.stream(**request) as events:
            for text in events.text_stream:
                sys.stdout.write(text)
                sys.stdout.flush()
            message = events.get_final_message()
            headers = dict(events.response.headers)
    else:
        raw = client.messages.with_raw_response.create(**request)
        message = raw.parse()
        headers = dict(raw.headers)
    text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
    return Answer(
        text=text,
        model=message.model or choice.platform_id,
        stop_reason=message.stop_reason,
        usage=_usage_counts(message.usage),
        headers={k.lower(): v for k, v in headers.items()},
    )


def _usage_counts(usage: Any) -> dict[str, int]:
    def count(obj: Any, name: str) -> int:
        value = getattr(obj, name, None) if obj is not None else None
        return int(value) if isinstance(value, int) else 0

    split = getattr(usage, "cache_creation", None)
    return {
        "input_tokens": count(usage, "input_tokens"),
        "output_tokens": count(usage, "output_tokens"),
        "cache_creation_input_tokens": count(usage, "cache_creation_input_tokens"),
        "cache_read_input_tokens": count(usage, "cache_read_input_tokens"),
        "cache_creation_5m_input_tokens": count(split, "ephemeral_5m_input_tokens"),
        "cache_creation_1h_input_tokens": count(split, "ephemeral_1h_input_tokens"),
    }


def estimate_cost(answer: Answer, resolved: ResolvedConfig, choice: ModelChoice) -> tuple[float | None, str]:
    """(USD, where the figure comes from): the gateway's own `x-cloudgate-cost-usd` when it sent
    one (it knows where the request really went), else the catalog's list prices."""
    from cloudgate.catalog import default_catalog
    from cloudgate.governance.pricing import price_usage
    from cloudgate.protocol.messages import Usage
    from cloudgate.routing.router import ONE_M_BETA

    header = answer.headers.get("x-cloudgate-cost-usd")
    if header:
        try:
            return float(header), "gateway"
        except ValueError:
            pass
    catalog = default_catalog()
    entry = catalog.lookup(choice.platform_id) or catalog.lookup(answer.model)
    cost = price_usage(
        Usage(**answer.usage),
        entry,
        provider=resolved.platform,
        region=choice.region,
        betas=[ONE_M_BETA] if choice.one_m else [],
    )
    if not cost.priced:
        return None, "unknown model: no list price"
    return cost.micro / 1_000_000, "list price"


def _summary(
    answer: Answer,
    resolved: ResolvedConfig,
    choice: ModelChoice,
    endpoint: str,
    cost: float | None,
    cost_source: str,
) -> str:
    u = answer.usage
    where = resolved.platform + (f", {choice.region}" if choice.region else "")
    cost_text = f"${cost:.6f} ({cost_source})" if cost is not None else cost_source
    return "\n".join(
        [
            "─" * 40,
            f"model   {answer.model} ({where}) via {endpoint}",
            f"tokens  in {u['input_tokens']}, out {u['output_tokens']}, "
            f"cache write {u['cache_creation_input_tokens']}, cache read {u['cache_read_input_tokens']}",
            f"cost    {cost_text}",
        ]
    )


def explain_error(
    exc: BaseException, resolved: ResolvedConfig, choice: ModelChoice, endpoint: str
) -> str | None:
    """One line saying what went wrong and where to look; None for errors that are bugs."""
    import anthropic
    import botocore.exceptions
    import google.auth.exceptions

    from cloudgate.client import ClientConfigError

    where = f"region {choice.region}" if choice.region else endpoint
    if isinstance(exc, anthropic.NotFoundError):
        return f"model {choice.platform_id} not found at {where} ({_detail(exc)}): see `cloudgate doctor`"
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return (
            f"{exc.status_code} from {endpoint}: the credentials ({resolved.auth}) were refused: "
            f"{_detail(exc)}; see `cloudgate config show`"
        )
    if isinstance(exc, anthropic.RateLimitError):
        return f"429 from {endpoint}: rate limited or out of quota: {_detail(exc)}"
    if isinstance(exc, anthropic.APIStatusError):
        return f"{exc.status_code} from {endpoint}: {_detail(exc)}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"{endpoint} did not answer in time"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return f"cannot reach {endpoint}: {cause}"
    if isinstance(exc, ClientConfigError):
        return str(exc)
    if isinstance(exc, google.auth.exceptions.GoogleAuthError):
        return f"Google credentials ({resolved.auth}): {exc}; see `cloudgate config show`"
    if isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
        return f"AWS credentials ({resolved.auth}): {exc}; see `cloudgate config show`"
    if isinstance(exc, ValueError):  # the SDK's own checks of its arguments
        return str(exc)
    return None


def _detail(exc: Any) -> str:
    """The message inside an error body, whatever the platform's error shape."""
    body = getattr(exc, "body", None)
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        for key in ("message", "Message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(getattr(exc, "message", None) or exc)
