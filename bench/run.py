"""cloudgate's benchmark: wrk against a static upstream, directly and through each proxy.

    bash bench/run.sh [--quick] [--rounds N] [--only direct,cloudgate] [--concurrency 64,16,1]

Every target sits between `wrk -t1` and the same static upstream (nginx, see upstream.py):
`direct` is wrk straight to the upstream, `baseline` the minimal pass-through (baseline.py),
`cloudgate` the real gateway with every default feature on, `cloudgate-bare` the same gateway
with governance and logging off. Each is measured for a non-streaming and a streaming answer at
concurrency 64, 16 and 1, and with sequential requests (ttfb.py) for the time to the first
byte; the table gives req/s, p50 and p99, then the ratios performance.md sets targets for. Raw
figures go to bench/results/<ts>.json.

Adding a peer (LiteLLM, Portkey) is one more `Target` in `TARGETS`: a function that starts it
(through `Procs`, so it is cleaned up) and returns its `Endpoint`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import ttfb
import upstream

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "wrk" / "post.lua"
VENV_BIN = ROOT / ".venv" / "bin"
PEERS = ROOT / ".cache" / "bench-peers"  # peers' own environments (git-ignored, reused)
LITELLM_SPEC = "litellm[proxy]"
PORTKEY_SPEC = "@portkey-ai/gateway"
LITELLM_KEY = "sk-bench-master"

MODES = ("json", "stream")
ANSWER = {"json": "Message JSON", "stream": "SSE, 43 events"}  # how the tables name them
CONCURRENCY = (64, 16, 1)  # the first one also warms each target up
TTFB_REQUESTS = {"quick": 300, "full": 1000}  # sequential requests per target and answer kind
TTFB_WARMUP = {"quick": 50, "full": 100}
TTFB_MAX_SECONDS = 30.0  # per target and answer kind: a slow peer gets fewer requests, not minutes
API_KEY = "bench-key"
VERTEX_TOKEN = "bench-token"
MODEL = "claude-sonnet-4-5"
VERTEX_PATH = f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{MODEL}"
PROMPT = "Write one short sentence about a fox, for a benchmark."

# Targets from performance.md, checked for every target that is neither direct nor baseline.
MIN_RATIO_TO_BASELINE = 0.80
MAX_ADDED_P50_MS = 0.5
MAX_ADDED_P99_MS = 1.5
MIN_TIMES_PEER = {"litellm": 40.0, "portkey": 6.0}  # cloudgate's req/s over the peer's, c=16

# Variables the gateway (or a peer) would read instead of the benchmark's settings file.
_FOREIGN_ENV = ("CLOUDGATE_", "ANTHROPIC_", "CLOUD_ML_", "VERTEX_", "GOOGLE_", "GCLOUD_", "DISABLE_PROMPT")


class BenchError(Exception):
    """Something makes the figures meaningless (setup failed, wrong answer): stop and say why."""


class PeerUnavailable(Exception):
    """A peer (LiteLLM, Portkey) cannot be installed, started or checked: skip it, say why."""


# -- processes ----------------------------------------------------------------------------------


T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without variables that would reconfigure a server."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV)}


@dataclass
class Proc:
    """A server this run started; its output goes to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        """The end of its output, for error messages."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        return "\n".join("    " + line for line in text[-lines:]) or "    (no output)"


class Procs:
    """Starts servers in their own process groups and stops every one of them, whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start `argv` (output to a log file in the work directory)."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env if env is not None else clean_env(),
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C reaches us, not them: we stop them in order
            )
        proc = Proc(name, popen, log)
        self.running.append(proc)
        return proc

    def wait_listening(self, proc: Proc, port: int, timeout: float = 20.0) -> None:
        """Wait until `port` accepts connections, or fail with the process's output."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.popen.poll() is not None:
                raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.name} did not listen on {port} within {timeout:g}s:\n{proc.tail()}")
            time.sleep(0.05)

    def stop(self, proc: Proc) -> None:
        """Stop one process group now (a peer that is skipped)."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        """SIGTERM each process group we started, then SIGKILL what is left after 5 s."""
        for proc in reversed(self.running):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in reversed(self.running):
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self.running.clear()


def rss_kb(pid: int) -> dict[str, int]:
    """Resident memory now and at its peak (VmRSS, VmHWM) in kB, from /proc."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


# -- what is measured ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    """How wrk reaches one target, and what a correct answer looks like."""

    urls: dict[str, str]  # mode -> URL
    bodies: dict[str, Path]  # mode -> request body file
    headers: list[str]  # "name:value" for post.lua
    pid: int | None = None  # the process whose memory is reported
    note: str = ""
    exact: bool = True  # the answer must be the upstream's bytes (peers: a valid Message / stream)
    modes: tuple[str, ...] = MODES  # the answer kinds this target is measured with
    features: dict[str, Any] = field(default_factory=dict)  # what a cloudgate target runs (the JSON)


@dataclass
class Target:
    """One row group of the table: what sits between wrk and the upstream."""

    name: str
    label: str
    start: Callable[[Bench], Endpoint]
    peer: bool = False  # installed outside the project; skipped (not fatal) when unavailable


@dataclass
class Bench:
    """The state of one run: work directory, processes, the upstream, request bodies."""

    workdir: Path
    procs: Procs
    upstream_url: str = ""
    upstream_kind: str = ""
    bodies: dict[str, Path] = field(default_factory=dict)

    def write_bodies(self) -> None:
        """The four request bodies: Anthropic format (to proxies) and Vertex format (direct)."""
        anthropic: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        vertex = {k: v for k, v in anthropic.items() if k != "model"}
        vertex["anthropic_version"] = "vertex-2023-10-16"
        docs = {
            "anthropic-json": anthropic,
            "anthropic-stream": anthropic | {"stream": True},
            "vertex-json": vertex,
            "vertex-stream": vertex | {"stream": True},
        }
        for name, doc in docs.items():
            path = self.workdir / f"{name}.body"
            path.write_bytes(orjson.dumps(doc))
            self.bodies[name] = path


def start_upstream(bench: Bench) -> None:
    """nginx with the static answers, or the uvicorn fallback when nginx is missing."""
    port = free_port()
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx:
        ngx_dir = bench.workdir / "nginx"
        ngx_dir.mkdir()
        conf = ngx_dir / "nginx.conf"
        conf.write_text(upstream.nginx_config(port, ngx_dir))
        proc = bench.procs.start("nginx", [nginx, "-p", str(ngx_dir), "-c", str(conf)])
        bench.upstream_kind = "nginx " + nginx_version(nginx)
    else:
        print(
            "!! nginx is not installed: using the uvicorn fallback upstream (bench/upstream.py).\n"
            "!! It is much slower than nginx, so `direct` and every ceiling are far lower than in\n"
            "!! performance.md; ratios between proxies are still comparable within this run.",
            file=sys.stderr,
        )
        proc = bench.procs.start(
            "upstream", [sys.executable, str(BENCH / "upstream.py"), "--port", str(port)]
        )
        bench.upstream_kind = "uvicorn fallback (bench/upstream.py)"
    bench.procs.wait_listening(proc, port)
    bench.upstream_url = f"http://127.0.0.1:{port}"


def start_direct(bench: Bench) -> Endpoint:
    """wrk straight to the upstream, with the request a gateway would send it."""
    return Endpoint(
        urls={
            "json": f"{bench.upstream_url}{VERTEX_PATH}:rawPredict",
            "stream": f"{bench.upstream_url}{VERTEX_PATH}:streamRawPredict",
        },
        bodies={"json": bench.bodies["vertex-json"], "stream": bench.bodies["vertex-stream"]},
        headers=[f"Authorization:Bearer {VERTEX_TOKEN}"],
        note=bench.upstream_kind,
    )


def start_baseline(bench: Bench) -> Endpoint:
    """bench/baseline.py: uvicorn + raw ASGI + aiohttp + orjson, Vertex body rewrite."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "baseline.py"), "--port", str(port), "--upstream", bench.upstream_url]
    proc = bench.procs.start("baseline", argv)
    bench.procs.wait_listening(proc, port)
    return anthropic_endpoint(bench, port, headers=[], pid=proc.popen.pid)


def start_cloudgate(
    bench: Bench,
    bare: bool = False,
    *,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    key: str = "governed",
) -> Endpoint:
    """`cloudgate serve` with its defaults (governance on SQLite, routing, activity log, metrics),
    a key, and one request-log line per request (to its log file).

    `bare`: the `cloudgate-bare` target, a plain forwarding gateway: `governance: false` (only
    `gateway.keys`, no store), no activity log, no metrics, no request log; same key, upstream
    and routing. Its process, config and data directory are named `cloudgate-bare`.

    For variants (bench/features.py): `name` names the process, config and data directory;
    `extra` is merged into the settings (section by section); `key` is `governed` (a store key
    with budgets and limits, see `governed_key`), `plain` (a store key of the same team and
    user, without budgets or limits) or `configured` (the `gateway.keys` key: no store lookup).
    """
    if key not in ("governed", "plain", "configured"):
        raise ValueError(f"unknown kind of key: {key!r}")
    name = name or ("cloudgate-bare" if bare else "cloudgate")
    data = {"cloudgate": "data", "cloudgate-bare": "data-bare"}.get(name, f"data-{name}")
    port = free_port()
    config = bench.workdir / f"{name}.yaml"
    settings: dict[str, Any] = {
        "gateway": {"host": "127.0.0.1", "port": port, "keys": [API_KEY], "log_requests": not bare},
        # the store (SQLite) and the spend journal; bare: must stay without a database
        "data_dir": str(bench.workdir / data),
        "vertex": {
            "project_id": "p",
            "region": "us-east5",
            "base_url": f"{bench.upstream_url}/v1",
            "access_token": VERTEX_TOKEN,
        },
        "log_level": "INFO",
    }
    if bare:
        settings |= {"governance": False, "activity": {"enabled": False}, "telemetry": {"metrics": False}}
    for section, value in (extra or {}).items():
        held = settings.get(section)
        settings[section] = held | value if isinstance(held, dict) and isinstance(value, dict) else value
    config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
    exe = VENV_BIN / "cloudgate"
    if not exe.exists():
        raise BenchError(f"{exe} is missing: run scripts/bootstrap.sh")
    secret = API_KEY if bare or key == "configured" else governed_key(exe, config, limited=key == "governed")
    proc = bench.procs.start(name, [str(exe), "serve", "--config", str(config)])
    bench.procs.wait_listening(proc, port)
    ep = anthropic_endpoint(
        bench, port, headers=[f"x-api-key:{secret}", "anthropic-version:2023-06-01"], pid=proc.popen.pid
    )
    governance = {
        # a store key (team, user) with budgets and rate limits checked on every request, pricing,
        # the spend journal and log; store on SQLite
        "governed": "store key, budgets, rate limits, spend",
        "plain": "store key, spend (no budgets or limits)",
        "configured": "configured key, spend",
    }
    ep.features = {
        "governance": False if bare else governance.get(key, key),
        "activity_log": "database" if settings.get("activity", {}).get("enabled", True) else "off",
        "metrics": settings.get("telemetry", {}).get("metrics", True),
        # one JSON line per request, to the server's log file
        "request_log": settings["gateway"]["log_requests"],
        "routing": "defaults (derived deployments, health)",
        "settings": settings,
    }
    return ep


def governed_key(exe: Path, config: Path, limited: bool = True) -> str:
    """A virtual key in the store, as governed users have: a team and a user, monthly budgets on
    the key and the team and rate limits on the key (all far above what a run spends, so every
    request is checked and none refused); without them when not `limited`. Returns the key's
    secret."""

    def cli(*args: str) -> Any:
        argv = [str(exe), *args, "--config", str(config), "--format", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=clean_env())
        if done.returncode != 0:
            raise BenchError(f"`cloudgate {' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")
        doc = json.loads(done.stdout)
        return doc[0] if isinstance(doc, list) else doc

    team = cli("teams", "create", "bench-team")["id"]
    user = cli("users", "create", "bench-user", "--team", team)["id"]
    key = cli("keys", "create", "--name", "bench", "--user", user, "--team", team)
    if not limited:
        return str(key["key"])
    cli("budgets", "set", "--scope", "key", "--id", key["id"], "--usd", "1000000")
    cli("budgets", "set", "--scope", "team", "--id", team, "--usd", "1000000")
    limits = ("--rpm", "100000000", "--input-tpm", "10000000000", "--max-concurrent", "100000")
    cli("limits", "set", "--scope", "key", "--id", key["id"], *limits)
    return str(key["key"])


def start_cloudgate_bare(bench: Bench) -> Endpoint:
    """`cloudgate serve` with governance and logging off (see `start_cloudgate`)."""
    return start_cloudgate(bench, bare=True)


def anthropic_endpoint(bench: Bench, port: int, headers: list[str], pid: int | None) -> Endpoint:
    """A proxy taking Anthropic `POST /v1/messages` on `port`."""
    url = f"http://127.0.0.1:{port}/v1/messages"
    return Endpoint(
        urls={"json": url, "stream": url},
        bodies={"json": bench.bodies["anthropic-json"], "stream": bench.bodies["anthropic-stream"]},
        headers=headers,
        pid=pid,
    )


def install_peer(name: str, argv: list[str], cwd: Path, timeout: float = 900) -> None:
    """Run one install step for a peer; PeerUnavailable (one line) when it fails."""
    print(f"installing {name} into {cwd.relative_to(ROOT)} ...", file=sys.stderr)
    log = PEERS / f"{name}-install.log"
    try:
        with log.open("ab") as out:
            done = subprocess.run(
                argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"cannot install {name} ({exc}); see {log}") from None
    if done.returncode != 0:
        raise PeerUnavailable(f"installing {name} failed ({' '.join(argv[:3])} ...); see {log}")


def start_litellm(bench: Bench) -> Endpoint:
    """LiteLLM's proxy (its own venv), Anthropic `POST /v1/messages`, routed to Vertex AI.

    LiteLLM insists on Google credentials for Vertex: it gets a throw-away service account whose
    token URI is the upstream's `/token`, which answers with the fixed bearer token.
    """
    venv = PEERS / "litellm"
    exe = venv / "bin" / "litellm"
    if not exe.exists() or not list(venv.glob("lib/python*/site-packages/google/auth")):
        PEERS.mkdir(parents=True, exist_ok=True)
        if not (venv / "bin" / "pip").exists():
            install_peer("litellm", ["python3", "-m", "venv", str(venv)], PEERS)
        # google-auth: LiteLLM's Vertex provider needs it (its `[google]` extra is far bigger)
        install_peer(
            "litellm", [str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC, "google-auth"], PEERS
        )
        if not exe.exists():
            raise PeerUnavailable(f"{exe} missing after installing {LITELLM_SPEC}")
    port = free_port()
    creds = bench.workdir / "litellm-credentials.json"
    key = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        text=True,
        check=False,
    )
    if key.returncode != 0:
        raise PeerUnavailable("litellm needs a throw-away RSA key for its Vertex credentials: openssl failed")
    creds.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "bench",
                "private_key": key.stdout,
                "client_email": "bench@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{bench.upstream_url}/token",
            }
        )
    )
    config = bench.workdir / "litellm.yaml"
    settings = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"vertex_ai/{MODEL}",
                    "vertex_project": "p",
                    "vertex_location": "us-east5",
                    "vertex_credentials": str(creds),
                    "api_base": bench.upstream_url,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_KEY},
    }
    config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
    env = clean_env()
    for var in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
        env.pop(var, None)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the price list from GitHub
    env["LITELLM_LOG"] = "ERROR"
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1", "--telemetry", "False"]
    proc = bench.procs.start("litellm", argv, env=env)
    try:
        bench.procs.wait_listening(proc, port, timeout=120)
    except BenchError as exc:
        raise PeerUnavailable(f"litellm did not start: {str(exc).splitlines()[0]}; see {proc.log}") from None
    ep = anthropic_endpoint(
        bench,
        port,
        headers=[f"Authorization:Bearer {LITELLM_KEY}", "anthropic-version:2023-06-01"],
        pid=proc.popen.pid,
    )
    ep.exact = False
    ep.note = f"litellm {peer_version(venv / 'bin' / 'pip', 'litellm')}"
    return ep


def peer_version(pip: Path, package: str) -> str:
    """The installed version of a package in a peer's venv."""
    done = subprocess.run([str(pip), "show", package], capture_output=True, text=True, check=False)
    return next((x.split()[-1] for x in done.stdout.splitlines() if x.startswith("Version:")), "?")


def start_portkey(bench: Bench) -> Endpoint:
    """Portkey's gateway (Node, npm package in its own directory), Anthropic `POST /v1/messages`
    with provider `vertex-ai` and the upstream as custom host."""
    home = PEERS / "portkey"
    pkg = home / "node_modules" / "@portkey-ai" / "gateway"
    entry = pkg / "build" / "start-server.js"
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node is not installed (Debian: apt-get install -y nodejs npm)")
    if not entry.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise PeerUnavailable("npm is not installed (Debian: apt-get install -y npm)")
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "package.json").exists():
            (home / "package.json").write_text('{"name": "bench-peer-portkey", "private": true}\n')
        install_peer("portkey", [npm, "install", "--no-audit", "--no-fund", PORTKEY_SPEC], home)
        if not entry.exists():
            raise PeerUnavailable(f"{entry} missing after npm install {PORTKEY_SPEC}")
    port = free_port()
    env = clean_env() | {"NODE_ENV": "production"}
    proc = bench.procs.start("portkey", [node, str(entry), f"--port={port}", "--headless"], env=env)
    try:
        bench.procs.wait_listening(proc, port, timeout=60)
    except BenchError as exc:
        raise PeerUnavailable(f"portkey did not start: {str(exc).splitlines()[0]}; see {proc.log}") from None
    bodies = {}
    for mode in MODES:  # Portkey's Vertex provider takes the publisher from the model name
        doc = orjson.loads(bench.bodies[f"anthropic-{mode}"].read_bytes())
        doc["model"] = f"anthropic.{MODEL}"
        path = bench.workdir / f"portkey-{mode}.body"
        path.write_bytes(orjson.dumps(doc))
        bodies[mode] = path
    url = f"http://127.0.0.1:{port}/v1/messages"
    version = json.loads((pkg / "package.json").read_text()).get("version", "?")
    return Endpoint(
        urls={"json": url, "stream": url},
        bodies=bodies,
        headers=[
            "x-portkey-provider:vertex-ai",
            f"x-portkey-custom-host:{bench.upstream_url}",
            "x-portkey-vertex-project-id:p",
            "x-portkey-vertex-region:us-east5",
            f"Authorization:Bearer {VERTEX_TOKEN}",
            "anthropic-version:2023-06-01",
        ],
        pid=proc.popen.pid,
        exact=False,
        # Its streamed Vertex answer fails on Node (HTTP 500, "TypeError: immutable": it appends
        # headers to the upstream fetch Response), so only JSON is measured.
        modes=("json",),
        note=f"portkey gateway {version}; streaming not measured",
    )


TARGETS: list[Target] = [
    Target("direct", "nothing (wrk to the upstream)", start_direct),
    Target("baseline", "minimal pass-through (bench/baseline.py)", start_baseline),
    Target("cloudgate", "cloudgate serve, every feature on (defaults)", start_cloudgate),
    Target("cloudgate-bare", "cloudgate serve, governance and logging off", start_cloudgate_bare),
    Target("litellm", "LiteLLM proxy, 1 worker, no database (peer)", start_litellm, peer=True),
    Target("portkey", "Portkey gateway, Node, 1 process (peer)", start_portkey, peer=True),
]


# -- checking and measuring ---------------------------------------------------------------------


def post(url: str, body: bytes, headers: list[str]) -> tuple[int, str, bytes]:
    """One request (stdlib client): status, content type, body."""
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        hdrs = {"content-type": "application/json"}
        hdrs.update(h.split(":", 1) for h in headers)
        conn.request("POST", "/" + rest, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


def valid_answer(mode: str, body: bytes) -> bool:
    """The relaxed check for peers that re-encode the answer: a Message JSON, or an SSE stream
    whose last event is message_stop."""
    if mode == "json":
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(doc, dict) and doc.get("type") == "message" and isinstance(doc.get("content"), list)
    events = [chunk for chunk in body.replace(b"\r\n", b"\n").split(b"\n\n") if chunk.strip()]
    if not events:
        return False
    data = [line[5:].strip() for line in events[-1].split(b"\n") if line.startswith(b"data:")]
    try:
        return bool(data) and orjson.loads(data[-1]).get("type") == "message_stop"
    except (orjson.JSONDecodeError, AttributeError):
        return False


@functools.cache
def upstream_answer(mode: str) -> bytes:
    """The upstream's exact answer body for an answer kind (built once)."""
    return upstream.message_body() if mode == "json" else upstream.stream_body()


def right_answer(ep: Endpoint, mode: str, body: bytes) -> bool:
    """Exactly the upstream's bytes, or (peers) a valid answer of the right kind."""
    return body == upstream_answer(mode) if ep.exact else valid_answer(mode, body)


def check(name: str, ep: Endpoint) -> None:
    """One request per mode must come back 200 with exactly the upstream's answer (peers: a
    valid answer of the right kind, see `valid_answer`)."""
    expected = {mode: upstream_answer(mode) for mode in MODES}
    types = {"json": "application/json", "stream": "text/event-stream"}
    for mode in ep.modes:
        try:
            status, ctype, body = post(ep.urls[mode], ep.bodies[mode].read_bytes(), ep.headers)
        except OSError as exc:
            raise BenchError(f"{name}/{mode}: request to {ep.urls[mode]} failed: {exc}") from None
        right = right_answer(ep, mode, body)
        if status != 200 or not ctype.startswith(types[mode]) or not right:
            raise BenchError(
                f"{name}/{mode}: wrong answer from {ep.urls[mode]}: HTTP {status}, content-type {ctype!r}, "
                f"{len(body)} bytes (expected 200, {types[mode]}, the upstream's {len(expected[mode])} "
                f"bytes)\n    body starts: {body[:300]!r}"
            )


def check_request_log(log: Path, wait: float = 3.0) -> None:
    """cloudgate must have written a request record for the check requests.

    Records are JSON lines written in batches a fraction of a second after each request, so
    the check waits a little for them.
    """
    deadline = time.monotonic() + wait
    while True:
        lines = [
            line for line in log.read_text(errors="replace").splitlines() if line.startswith('{"request_id"')
        ]
        if any('"status":200' in line for line in lines):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"cloudgate wrote no request record with status 200 to {log}")
        time.sleep(0.1)


def wrk(ep: Endpoint, mode: str, conc: int, seconds: float) -> dict[str, Any]:
    """One wrk run; the figures post.lua reports, plus req/s and milliseconds."""
    argv = ["wrk", "-t1", f"-c{conc}", f"-d{seconds:g}s", "--latency", "--timeout", "10s", "-s", str(LUA)]
    argv += [ep.urls[mode], "--", str(ep.bodies[mode]), *ep.headers]
    load_before = os.getloadavg()[0]
    cpu_before = None if ep.pid is None else cpu_seconds(ep.pid)
    helpers_before = {} if ep.pid is None else helper_cpu_seconds(ep.pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu_after = None if ep.pid is None else cpu_seconds(ep.pid)
    helpers_after = {} if ep.pid is None else helper_cpu_seconds(ep.pid)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    lat = raw["latency_us"]
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "mean_ms": lat["mean"] / 1000,
        "max_ms": lat["max"] / 1000,
        "requests": raw["requests"],
        "errors": raw["errors"],
        "error_count": sum(raw["errors"].values()),
        "loadavg_1m_before": load_before,
        # The server's CPU time (all its threads) per completed request: steadier than req/s on
        # a shared machine, since other processes' load changes it far less.
        "cpu_us_per_request": (
            (cpu_after - cpu_before) / raw["requests"] * 1e6
            if cpu_before is not None and cpu_after is not None and raw["requests"]
            else None
        ),
        # The same for the server's child processes (cloudgate's store writer), counted apart:
        # they run beside it, on another core when there is one.
        "helper_cpu_us_per_request": (
            sum(after - helpers_before.get(pid, 0.0) for pid, after in helpers_after.items())
            / raw["requests"]
            * 1e6
            if raw["requests"]
            else 0.0
        ),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid`, all its threads (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def child_pids(pid: int) -> list[int]:
    """The child processes of `pid` (a gateway's store writer; `serve --workers N`'s workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(children)


def helper_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each child process of `pid` (the store writer of a gateway)."""
    return {child: cpu_seconds(child) for child in child_pids(pid)}


def first_byte(
    ep: Endpoint, mode: str, requests: int, warmup: int, max_seconds: float | None = None
) -> dict[str, Any]:
    """Sequential requests (concurrency 1, ttfb.py) with wrk's body and headers: the times to the
    first body byte and to the last byte. Answers that are not right count as errors."""
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = ttfb.event_loop_runner()(
        ttfb.measure(
            ep.urls[mode],
            ep.bodies[mode].read_bytes(),
            ep.headers,
            requests,
            warmup,
            valid=lambda status, body: right_answer(ep, mode, body),
            max_seconds=max_seconds,
        )
    )
    if not result["requests"]:
        raise BenchError(f"no right answer from {ep.urls[mode]} in {requests} sequential requests")
    return result | {"loadavg_1m_before": load_before}


def median_of(
    runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float], name: str
) -> dict[str, Any]:
    """The round with the median `value` (its other figures kept from that same round), plus
    every round's `value` under `name`."""
    ranked = sorted(runs, key=value)
    return ranked[(len(ranked) - 1) // 2] | {name: [round(value(r), 3) for r in runs]}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median req/s (latencies kept from that same round)."""
    return median_of(runs, lambda r: r["rps"], "rounds_rps")


def median_ttfb(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median time to first byte (p50)."""
    return median_of(runs, lambda r: r["ttfb_ms"]["p50"], "rounds_ttfb_p50_ms")


# -- the table ----------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    """Milliseconds the way performance.md writes them."""
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def table(
    labels: dict[str, str],
    cells: dict[str, dict[str, Any]],
    upstream_kind: str,
    concurrency: tuple[int, ...] = CONCURRENCY,
) -> list[str]:
    """The main table: one row per target, body kind and concurrency."""
    what = f"what sits between wrk and {upstream_kind.split()[0]}"
    out = header(what, "answer", "conc.", "req/s", "p50", "p99", "CPU/req", "errors")
    for name, label in labels.items():
        for mode in MODES:
            for conc in concurrency:
                r = cells.get(f"{name}/{mode}/c{conc}")
                if r is None:
                    continue
                cpu = r.get("cpu_us_per_request")
                helpers = r.get("helper_cpu_us_per_request") or 0
                used = "" if cpu is None else f"{cpu:,.0f} us"
                if cpu is not None and helpers >= 1:
                    used += f" + {helpers:,.0f}"
                out.append(
                    f"| {label} | {ANSWER[mode]} | {conc} | {r['rps']:,.0f} | {fmt_ms(r['p50_ms'])} | "
                    f"{fmt_ms(r['p99_ms'])} | {used} | "
                    f"{r['error_count'] or ''} |"
                )
    return out


def header(*columns: str) -> list[str]:
    """A Markdown table's first two lines."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def rate_levels(concurrency: tuple[int, ...]) -> list[int]:
    """The concurrencies req/s ratios are given for: every one above 1 (64 and 16 by default)."""
    return [c for c in concurrency if c > 1]


def ratios(
    cells: dict[str, dict[str, Any]], names: list[str], concurrency: tuple[int, ...] = CONCURRENCY
) -> tuple[list[str], dict[str, Any]]:
    """Each proxy against the baseline (req/s at c=64 and c=16) and against direct (latency at c=1)."""
    levels = rate_levels(concurrency)
    rate_columns = [f"req/s vs baseline, c={c}" for c in levels]
    lines = header("proxy", "answer", *rate_columns, "added p50, c=1", "added p99, c=1")
    found: dict[str, Any] = {}
    for name in names:
        if name == "direct":
            continue
        for mode in MODES:
            entry: dict[str, Any] = {}
            for conc in levels:
                mine, base = cells.get(f"{name}/{mode}/c{conc}"), cells.get(f"baseline/{mode}/c{conc}")
                if mine and base:
                    entry[f"rps_ratio_to_baseline_c{conc}"] = mine["rps"] / base["rps"]
            mine1, direct1 = cells.get(f"{name}/{mode}/c1"), cells.get(f"direct/{mode}/c1")
            if mine1 and direct1:
                entry["added_p50_ms"] = mine1["p50_ms"] - direct1["p50_ms"]
                entry["added_p99_ms"] = mine1["p99_ms"] - direct1["p99_ms"]
            if not entry:
                continue
            found[f"{name}/{mode}"] = entry
            gated = name not in ("baseline", *MIN_TIMES_PEER)  # targets apply to cloudgate, not yardsticks
            cols = [
                verdict(
                    None if name == "baseline" else entry.get(f"rps_ratio_to_baseline_c{conc}"),
                    "{:.2f}",
                    MIN_RATIO_TO_BASELINE,
                    gated,
                    True,
                )
                for conc in levels
            ]
            cols += [
                verdict(entry.get("added_p50_ms"), "{:+.2f} ms", MAX_ADDED_P50_MS, gated, False),
                verdict(entry.get("added_p99_ms"), "{:+.2f} ms", MAX_ADDED_P99_MS, gated, False),
            ]
            lines.append(f"| {name} | {mode} | " + " | ".join(cols) + " |")
    lines.append(
        f"\ntargets (performance.md): req/s >= {MIN_RATIO_TO_BASELINE:.2f} x baseline; "
        f"added latency over direct at c=1: p50 < {MAX_ADDED_P50_MS} ms, p99 < {MAX_ADDED_P99_MS} ms"
    )
    return lines, found


def ttfb_table(labels: dict[str, str], tcells: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Time to first body byte and to last byte (ttfb.py, c=1), and the first byte's delay over direct."""
    what = "time to first byte, c=1 (sequential requests)"
    figures = [f"{kind} {p}" for kind in ("ttfb", "last byte", "added ttfb") for p in ("p50", "p99")]
    lines = header(what, "answer", "requests", *figures, "errors")
    found: dict[str, Any] = {}
    for name, label in labels.items():
        for mode in MODES:
            r, direct = tcells.get(f"{name}/{mode}"), tcells.get(f"direct/{mode}")
            if r is None:
                continue
            first, last = r["ttfb_ms"], r["last_byte_ms"]
            entry = {"ttfb_p50_ms": first["p50"], "ttfb_p99_ms": first["p99"]}
            added = ["-", "-"]
            if direct is not None and name != "direct":
                entry["added_ttfb_p50_ms"] = first["p50"] - direct["ttfb_ms"]["p50"]
                entry["added_ttfb_p99_ms"] = first["p99"] - direct["ttfb_ms"]["p99"]
                added = [f"{entry['added_ttfb_p50_ms']:+.2f} ms", f"{entry['added_ttfb_p99_ms']:+.2f} ms"]
            found[f"{name}/{mode}"] = entry
            lines.append(
                f"| {label} | {ANSWER[mode]} | {r['requests']:,} | {fmt_ms(first['p50'])} | "
                f"{fmt_ms(first['p99'])} | {fmt_ms(last['p50'])} | {fmt_ms(last['p99'])} | "
                f"{added[0]} | {added[1]} | {r['errors'] or ''} |"
            )
    return lines, found


def features_cost(
    cells: dict[str, dict[str, Any]],
    tcells: dict[str, dict[str, Any]],
    concurrency: tuple[int, ...] = CONCURRENCY,
) -> tuple[list[str], dict[str, Any]]:
    """What governance and logging cost: cloudgate against cloudgate-bare, per answer kind."""
    levels = rate_levels(concurrency)
    rate_columns = [f"req/s, c={c}" for c in levels]
    lines = header("cloudgate / cloudgate-bare", *rate_columns, "p50 difference, c=1", "ttfb p50 difference")
    found: dict[str, Any] = {}
    for mode in MODES:
        entry: dict[str, Any] = {}
        cols = []
        for conc in levels:
            full, bare = cells.get(f"cloudgate/{mode}/c{conc}"), cells.get(f"cloudgate-bare/{mode}/c{conc}")
            if full and bare:
                entry[f"rps_ratio_c{conc}"] = full["rps"] / bare["rps"]
            cols.append(f"{entry[f'rps_ratio_c{conc}']:.2f}x" if f"rps_ratio_c{conc}" in entry else "-")
        full, bare = cells.get(f"cloudgate/{mode}/c1"), cells.get(f"cloudgate-bare/{mode}/c1")
        if full and bare:
            entry["p50_difference_ms"] = full["p50_ms"] - bare["p50_ms"]
        full, bare = tcells.get(f"cloudgate/{mode}"), tcells.get(f"cloudgate-bare/{mode}")
        if full and bare:
            entry["ttfb_p50_difference_ms"] = full["ttfb_ms"]["p50"] - bare["ttfb_ms"]["p50"]
        if not entry:
            continue
        cols += [
            f"{entry[k]:+.2f} ms" if k in entry else "-"
            for k in ("p50_difference_ms", "ttfb_p50_difference_ms")
        ]
        found[mode] = entry
        lines.append(f"| {mode} | " + " | ".join(cols) + " |")
    return (lines if found else []), found


def peer_ratios(
    cells: dict[str, dict[str, Any]], names: list[str], concurrency: tuple[int, ...] = CONCURRENCY
) -> tuple[list[str], dict[str, Any]]:
    """cloudgate's req/s at c=64 and c=16 divided by each peer's (performance.md: 40x LiteLLM, 6x Portkey)."""
    lines: list[str] = []
    found: dict[str, Any] = {}
    for peer, limit in MIN_TIMES_PEER.items():
        if peer not in names:
            continue
        for mode in MODES:
            for conc in rate_levels(concurrency):
                mine, theirs = cells.get(f"cloudgate/{mode}/c{conc}"), cells.get(f"{peer}/{mode}/c{conc}")
                if theirs is None:
                    lines.append(f"cloudgate vs {peer}, {mode}, c={conc}: not measured")
                    continue
                if mine is None:
                    continue
                times = mine["rps"] / theirs["rps"]
                found[f"cloudgate/{peer}/{mode}/c{conc}"] = times
                mark = "MET" if times >= limit else "MISS"
                lines.append(
                    f"cloudgate vs {peer}, {mode}, c={conc}: {times:.1f}x (target >= {limit:g}x) {mark}"
                )
    return lines, found


def verdict(value: float | None, fmt: str, limit: float, gated: bool, at_least: bool) -> str:
    """A figure with its mark against the target (`ok`/`MISS`), `-` when not measured."""
    if value is None:
        return "-"
    if not gated:
        return fmt.format(value)
    ok = value >= limit if at_least else value < limit
    return f"{fmt.format(value)} {'ok' if ok else 'MISS'}"


# -- the run ------------------------------------------------------------------------------------


def nginx_version(exe: str) -> str:
    """`1.22.1` from `nginx -v`."""
    done = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)
    return done.stderr.strip().rpartition("/")[2]


def git_head() -> str:
    """The commit being measured, marked `+dirty` when src/ has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "src") else "")


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so clean-up runs for it as it does for Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def concurrency_list(text: str) -> tuple[int, ...]:
    """`64,16,1` -> (64, 16, 1): positive, no repeats, in the given order."""
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"positive connection counts, each once: {text!r}")
    return levels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"3 s per measurement instead of 10 s, {TTFB_REQUESTS['quick']} sequential requests "
        f"for the time to first byte instead of {TTFB_REQUESTS['full']}",
    )
    p.add_argument("--duration", type=float, help="seconds per measurement (overrides --quick)")
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=CONCURRENCY,
        help=f"comma-separated wrk connection counts (default: {','.join(map(str, CONCURRENCY))})",
    )
    p.add_argument(
        "--ttfb-requests",
        type=int,
        help="sequential requests per target and answer kind for the time to first byte",
    )
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole matrix; report the median round")
    p.add_argument(
        "--only", help="comma-separated targets (default: all): " + ",".join(t.name for t in TARGETS)
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, server logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whatever the figures), 1 when it could not."""
    args = parse_args(argv)
    seconds = args.duration or (3.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 2.0
    size = "quick" if args.quick else "full"
    requests = TTFB_REQUESTS[size] if args.ttfb_requests is None else max(0, args.ttfb_requests)
    first_byte_runs = (requests, TTFB_WARMUP[size])
    wanted = args.only.split(",") if args.only else [t.name for t in TARGETS]
    targets = [t for t in TARGETS if t.name in wanted]
    unknown = set(wanted) - {t.name for t in targets}
    if unknown:
        print(f"unknown targets: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (bench/run.sh does it as root)", file=sys.stderr)
        return 1

    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = in_workdir(
        "cloudgate-bench-",
        args.keep,
        lambda bench: run(
            bench, targets, seconds, warmup, args.rounds, stamp, args.concurrency, first_byte_runs
        ),
    )
    if isinstance(report, int):
        return report
    print("\n".join(report))
    return 0


def in_workdir(prefix: str, keep: bool, work: Callable[[Bench], T]) -> T | int:
    """Call `work` with a fresh work directory and process set, and stop every server it started
    whatever happens (error, Ctrl-C, SIGTERM). Its result, or the exit status when it could not
    finish: 1 on a BenchError (the work directory is then kept, for the servers' logs), 130 when
    interrupted. Every benchmark in bench/ runs through it."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    procs = Procs(workdir)
    try:
        with terminate_on_sigterm():
            return work(Bench(workdir, procs))
    except BenchError as exc:
        keep = True
        print(f"\nbenchmark aborted: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def save_results(filename: str, stamp: str, doc: dict[str, Any]) -> str:
    """Write `doc`, with the stamp, the commit and the machine, to bench/results/<filename>; the
    report line that says where."""
    head = {
        "stamp": stamp,
        "commit": git_head(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / filename
    out.write_bytes(orjson.dumps(head | doc, option=orjson.OPT_INDENT_2, default=str))
    return f"\nraw figures: {out.relative_to(ROOT)}"


def progress(rnd: int, key: str, figures: str, errors: object = None) -> None:
    """One measurement's line on stderr."""
    flag = f"  ERRORS {errors}" if errors else ""
    print(f"  round {rnd + 1} {key:<27} {figures}{flag}", file=sys.stderr)


def run(
    bench: Bench,
    targets: list[Target],
    seconds: float,
    warmup: float,
    rounds: int,
    stamp: str,
    concurrency: tuple[int, ...] = CONCURRENCY,
    first_byte_runs: tuple[int, int] = (TTFB_REQUESTS["full"], TTFB_WARMUP["full"]),
) -> list[str]:
    """Start everything, check it answers right, measure, and write the JSON; the report lines.

    `first_byte_runs`: sequential requests (timed, warm-up) per target and answer kind for the
    time to first byte; (0, 0) measures none."""
    bench.write_bodies()
    start_upstream(bench)
    endpoints: dict[str, Endpoint] = {}
    memory: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for target in list(targets):
        print(f"starting {target.name} ...", file=sys.stderr)
        started = len(bench.procs.running)
        try:
            ep = target.start(bench)
            check(target.name, ep)
        except (PeerUnavailable, BenchError) as exc:
            if not target.peer:
                raise
            reason = str(exc).splitlines()[0]
            print(f"!! skipping {target.name}: {reason}", file=sys.stderr)
            skipped[target.name] = reason
            for proc in bench.procs.running[started:]:
                bench.procs.stop(proc)
            targets.remove(target)
            continue
        endpoints[target.name] = ep
        if ep.pid is not None:
            memory[target.name] = {"before": rss_kb(ep.pid)}
    if "cloudgate" in endpoints:
        check_request_log(bench.workdir / "cloudgate.log")
    print(f"all answers correct; upstream: {bench.upstream_kind}", file=sys.stderr)

    runs: dict[str, list[dict[str, Any]]] = {}
    first_runs: dict[str, list[dict[str, Any]]] = {}
    requests, first_warmup = first_byte_runs
    kinds = sum(len(endpoints[t.name].modes) for t in targets)
    total = rounds * kinds * len(concurrency)
    eta = total * seconds + rounds * kinds * (warmup + requests * 0.004)
    print(
        f"{total} measurements of {seconds:g} s and {rounds * kinds} of {requests} sequential requests, "
        f"about {eta / 60:.1f} min",
        file=sys.stderr,
    )
    for rnd in range(rounds):
        for mode in MODES:
            for conc in concurrency:
                for target in targets:
                    ep = endpoints[target.name]
                    if mode not in ep.modes:
                        continue
                    if conc == concurrency[0]:
                        wrk(ep, mode, conc, warmup)  # connections, caches, allocator
                    result = wrk(ep, mode, conc, seconds)
                    key = f"{target.name}/{mode}/c{conc}"
                    runs.setdefault(key, []).append(result)
                    progress(
                        rnd,
                        key,
                        f"{result['rps']:>9,.0f} req/s  p50 {fmt_ms(result['p50_ms']):>9}  "
                        f"p99 {fmt_ms(result['p99_ms']):>9}",
                        result["errors"] if result["error_count"] else None,
                    )
            for target in targets if requests else []:
                ep = endpoints[target.name]
                if mode not in ep.modes:
                    continue
                result = first_byte(ep, mode, requests, first_warmup, TTFB_MAX_SECONDS)
                key = f"{target.name}/{mode}"
                first_runs.setdefault(key, []).append(result)
                first, last = result["ttfb_ms"], result["last_byte_ms"]
                progress(
                    rnd,
                    key + "/ttfb",
                    f"{result['requests']:>5} sequential  ttfb p50 {fmt_ms(first['p50']):>9}  "
                    f"p99 {fmt_ms(first['p99']):>9}  last byte p50 {fmt_ms(last['p50']):>9}",
                    result["errors"] or None,
                )
    for name, ep in endpoints.items():
        if ep.pid is not None:
            memory[name]["after"] = rss_kb(ep.pid)

    cells = {key: median_run(rs) for key, rs in runs.items()}
    first_cells = {key: median_ttfb(rs) for key, rs in first_runs.items()}
    labels = {t.name: t.label for t in targets}
    lines = [
        "",
        f"cloudgate benchmark {stamp}: commit {git_head()}, {os.cpu_count()} CPUs, "
        f"upstream {bench.upstream_kind}, wrk -t1, {seconds:g} s per measurement, {rounds} round(s)"
        + (" (median shown)" if rounds > 1 else ""),
        "",
        *table(labels, cells, bench.upstream_kind, concurrency),
        "",
    ]
    ratio_lines, found = ratios(cells, list(labels), concurrency)
    lines += ratio_lines
    if first_cells:
        first_lines, found["first_byte"] = ttfb_table(labels, first_cells)
        lines += [
            "",
            f"time to first byte: bench/ttfb.py, {requests} sequential requests per row after "
            f"{first_warmup} untimed ones, one keep-alive connection, wrk's body and headers",
            "",
            *first_lines,
        ]
    cost_lines, found["cloudgate_vs_bare"] = features_cost(cells, first_cells, concurrency)
    if cost_lines:
        lines += ["", "what governance and logging cost (cloudgate over cloudgate-bare):", "", *cost_lines]
    peer_lines, found["cloudgate_vs_peer"] = peer_ratios(cells, list(labels), concurrency)
    if peer_lines:
        lines += ["", *peer_lines]
    lines += [f"{name} skipped: {why}" for name, why in skipped.items()]
    lines += [f"{name}: {ep.note}" for name, ep in endpoints.items() if name in MIN_TIMES_PEER and ep.note]
    if memory:
        lines.append("")
        for name, mem in memory.items():
            before, after = mem["before"], mem.get("after", {})
            lines.append(
                f"{name} resident memory: {before.get('VmRSS', 0) / 1024:.1f} MB before, "
                f"{after.get('VmRSS', 0) / 1024:.1f} MB after (peak {after.get('VmHWM', 0) / 1024:.1f} MB)"
            )
    if "cloudgate" in endpoints:
        log = bench.workdir / "cloudgate.log"
        with log.open("rb") as f:
            logged = sum(1 for line in f if line.startswith(b'{"request_id"'))
        lines.append(f"cloudgate request log: {logged:,} lines, {log.stat().st_size / 1e6:.1f} MB")
        memory.setdefault("cloudgate", {})["request_log_lines"] = logged
    if "cloudgate-bare" in endpoints:
        data = bench.workdir / "data-bare"
        files = (
            sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) if data.exists() else []
        )
        endpoints["cloudgate-bare"].features["data_dir_files_after_run"] = files
        lines.append(
            "cloudgate-bare data directory after the run: "
            + (", ".join(files) if files else "empty (no store, no journal, no activity files)")
        )
    if any(c["error_count"] for c in cells.values()) or any(c["errors"] for c in first_cells.values()):
        lines.append("\n!! some measurements had errors (column `errors`): their figures are not comparable")

    doc = {
        "upstream": bench.upstream_kind,
        "wrk": {
            "threads": 1,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "rounds": rounds,
            "concurrency": list(concurrency),
        },
        "first_byte": {
            "client": "bench/ttfb.py",
            "concurrency": 1,
            "requests": requests,
            "warmup_requests": first_warmup,
            "max_seconds": TTFB_MAX_SECONDS,
        },
        "targets": {t.name: {"label": t.label, **asdict(endpoints[t.name])} for t in targets},
        "results": runs,
        "median": cells,
        "first_byte_results": first_runs,
        "first_byte_median": first_cells,
        "ratios": found,
        "skipped": skipped,
        "memory_kb": memory,
    }
    lines.append(save_results(f"{stamp}.json", stamp, doc))
    return lines


if __name__ == "__main__":
    sys.exit(main())
