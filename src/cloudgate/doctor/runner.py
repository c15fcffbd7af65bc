"""The doctor's checks in order, each run only when what it depends on worked.

1. `config`: Claude Code's configuration resolves (platform, endpoint, models, problems).
2. `credentials`: the credentials it would send can be had, and whose they are.
3. `project`: Vertex AI has a project id.
4. `reachable`: every base URL in use answers HTTP.
5. `model:<role>`: each model in use answers a cheap probe at its region.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cloudgate.catalog import Catalog, default_catalog
from cloudgate.clientconfig import ModelChoice, ResolvedConfig, choice_for, effective_base_url
from cloudgate.doctor.credentials import (
    CredentialCheck,
    anthropic_credentials,
    aws_credentials,
    google_credentials,
    skip_auth_credentials,
)
from cloudgate.doctor.explain import Target, bedrock_region_problem
from cloudgate.doctor.model import CheckResult, Finding, Report, Verdict
from cloudgate.doctor.probes import probe, reach
from cloudgate.doctor.regions import VERTEX_LOCATIONS, closest, is_vertex_location

Progress = Callable[[str], None]

TITLES = {
    "config": "Claude Code configuration",
    "credentials": "Credentials",
    "project": "Google Cloud project",
    "reachable": "API reachable",
}
PLATFORM_NAMES = {
    "anthropic": "the Anthropic API",
    "vertex": "Google Vertex AI",
    "bedrock": "Amazon Bedrock",
}


def _noop(_: str) -> None:
    return None


def check_config(config: ResolvedConfig, catalog: Catalog) -> Finding:
    """What Claude Code will use, and every problem resolving found, plus region names it cannot know."""
    endpoint = config.base_url or effective_base_url(config.platform, None, config.region)
    parts = [f"Claude Code uses {PLATFORM_NAMES.get(config.platform, config.platform)}"]
    if config.region:
        parts.append(f"region `{config.region}`")
    if config.project:
        parts.append(f"project `{config.project}`")
    parts.append(f"endpoint {endpoint}" + (" (a gateway or proxy)" if config.base_url else ""))
    models = ", ".join(
        f"{m.role} `{m.platform_id}`" + (f" at {m.region}" if m.region else "") for m in config.models
    )
    problems = list(config.problems)
    problems.extend(_region_problems(config, catalog))
    details = {
        "platform": config.platform,
        "base_url": endpoint,
        "custom_base_url": config.base_url is not None,
        "region": config.region,
        "project": config.project,
        "auth": config.auth,
        "auth_detail": config.auth_detail,
        "models": [
            {"role": m.role, "name": m.name, "platform_id": m.platform_id, "region": m.region}
            for m in config.models
        ],
        "problems": problems,
    }
    message = ", ".join(parts) + f"; models: {models}."
    if not problems:
        return Finding(Verdict.OK, message, details=details)
    return Finding(
        Verdict.WARN,
        message + " Problems: " + "; ".join(problems) + ".",
        "Fix the settings named above (`cloudgate config show` says where each value comes from).",
        "config-problems",
        details,
    )


def _region_problems(config: ResolvedConfig, catalog: Catalog) -> list[str]:
    """Region values the platform does not have: Claude Code would send them anyway."""
    found: list[str] = []
    if config.platform == "vertex":
        for region in sorted({m.region for m in config.models if m.region} | {config.region or "global"}):
            if not is_vertex_location(region, catalog):
                near = closest(region, VERTEX_LOCATIONS)
                found.append(
                    f"`{region}` is not a Vertex AI location" + (f" (did you mean `{near}`?)" if near else "")
                )
    elif config.platform == "bedrock" and config.region:
        wrong = bedrock_region_problem(config.region)
        if wrong is not None:
            found.append(wrong.message)
    return found


def check_credentials(config: ResolvedConfig, env: Mapping[str, str]) -> CredentialCheck:
    """The credentials Claude Code would send on this platform."""
    if config.skip_auth:
        return skip_auth_credentials(config.platform, env)
    if config.platform == "vertex":
        return google_credentials(env)
    if config.platform == "bedrock":
        return aws_credentials(env)
    return anthropic_credentials(config, env)


def check_project(config: ResolvedConfig, creds: CredentialCheck) -> Finding:
    """Vertex needs a project id: configured, or (as the SDK falls back) the credentials' own."""
    if config.project:
        return Finding(Verdict.OK, f"Project `{config.project}`.", details={"project": config.project})
    from_creds = creds.credentials.project if creds.credentials else None
    if from_creds:
        return Finding(
            Verdict.WARN,
            f"No project is configured; the credentials name `{from_creds}`, which the SDK falls back to.",
            f"Say it explicitly: `export ANTHROPIC_VERTEX_PROJECT_ID={from_creds}`.",
            "project-from-credentials",
            {"project": from_creds},
        )
    return Finding(
        Verdict.FAIL,
        "No Google Cloud project id: Vertex AI URLs name the project, so no request can be made.",
        "`export ANTHROPIC_VERTEX_PROJECT_ID=YOUR-PROJECT-ID` (or GOOGLE_CLOUD_PROJECT; "
        "`gcloud projects list` shows yours).",
        "no-project",
    )


def _model_check_id(choice: ModelChoice, extra: bool) -> str:
    return f"model:{choice.name}" if extra else f"model:{choice.role}"


def _base_url(config: ResolvedConfig, region: str | None) -> str:
    return effective_base_url(config.platform, config.base_url, region).rstrip("/")


def diagnose(
    config: ResolvedConfig,
    *,
    extra_models: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
    home: Path | None = None,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run every check against a resolved configuration and return the report.

    `base_env` is the environment Claude Code starts from (default: this process's); the
    credential libraries see it overlaid by the settings files' `env`, as Claude Code would.
    """
    catalog = catalog or default_catalog()
    say = progress or _noop
    env = {**(os.environ if base_env is None else base_env), **config.env}
    if home is not None:
        env["HOME"] = str(home)
    report = Report(config.platform)

    def add(check_id: str, title: str, finding: Finding) -> CheckResult:
        result = CheckResult.of(check_id, title, finding)
        report.checks.append(result)
        return result

    add("config", TITLES["config"], check_config(config, catalog))

    say("getting credentials")
    creds = check_credentials(config, env)
    creds_result = add("credentials", TITLES["credentials"], creds.finding)

    project: str | None = config.project
    if config.platform == "vertex":
        project_result = add("project", TITLES["project"], check_project(config, creds))
        project = project or project_result.details.get("project")
        project_ok = project_result.verdict is not Verdict.FAIL
    else:
        report.checks.append(
            CheckResult.skipped(
                "project", TITLES["project"], f"Not used by {PLATFORM_NAMES[config.platform]}."
            )
        )
        project_ok = True

    models = [(m, False) for m in config.models]
    seen_names = {m.name for m in config.models} | {m.platform_id for m in config.models}
    for name in extra_models:
        if name not in seen_names:
            models.append(
                (choice_for(name, "extra", config.env, config.platform, config.region, catalog), True)
            )
            seen_names.add(name)

    bases = sorted({_base_url(config, m.region) for m, _ in models})
    reach_findings: dict[str, Finding] = {}
    for url in bases:
        say(f"connecting to {url}")
        reach_findings[url] = reach(url, platform=config.platform, region=_region_in(url, models, config))
    add("reachable", TITLES["reachable"], _merge_reach(reach_findings))

    usable = creds.credentials is not None and creds_result.verdict is not Verdict.FAIL
    why_not = None
    if not usable:
        why_not = "Skipped: no usable credentials (see `credentials`)."
    elif not project_ok:
        why_not = "Skipped: no project (see `project`)."
    probed: dict[tuple[str, str | None], Finding] = {}
    for choice, extra in models:
        check_id = _model_check_id(choice, extra)
        title = f"Model {choice.role}: {choice.name}"
        base = _base_url(config, choice.region)
        if why_not is not None or creds.credentials is None:
            report.checks.append(CheckResult.skipped(check_id, title, why_not or "Skipped."))
            continue
        if reach_findings[base].verdict is Verdict.FAIL:
            report.checks.append(CheckResult.skipped(check_id, title, f"Skipped: {base} is not reachable."))
            continue
        key = (choice.platform_id, choice.region)
        if key not in probed:
            say(f"probing {choice.platform_id}" + (f" at {choice.region}" if choice.region else ""))
            target = Target(
                config.platform,
                choice.role,
                choice.name,
                choice.platform_id,
                choice.region,
                project,
                via_proxy=config.base_url is not None,
                identity=creds.credentials.identity,
            )
            probed[key] = probe(target, base, creds.credentials, catalog)
        finding = probed[key]
        result = add(check_id, title, finding)
        result.details = {
            "role": choice.role,
            "model": choice.name,
            "platform_id": choice.platform_id,
            "region": choice.region,
            **result.details,
        }
    return report


def _region_in(url: str, models: list[tuple[ModelChoice, bool]], config: ResolvedConfig) -> str | None:
    return next((m.region for m, _ in models if m.region and m.region in url), config.region)


def _merge_reach(findings: Mapping[str, Finding]) -> Finding:
    failed = [f for f in findings.values() if f.verdict is Verdict.FAIL]
    if failed:
        first = failed[0]
        return Finding(
            first.verdict, first.message, first.fix, first.cause, {"urls": list(findings), **first.details}
        )
    urls = ", ".join(findings)
    return Finding(
        Verdict.OK, f"{urls} answer{'s' if len(findings) == 1 else ''}.", details={"urls": list(findings)}
    )


def failed_to_resolve(error: str, platform: str = "unknown") -> Report:
    """The report when the configuration itself cannot be read (a broken settings file)."""
    report = Report(platform)
    report.checks.append(
        CheckResult(
            "config",
            TITLES["config"],
            Verdict.FAIL,
            f"Claude Code's configuration could not be read: {error}",
            "Fix the file named above (it must be valid JSON), then run doctor again.",
            "config-unreadable",
        )
    )
    for check_id in ("credentials", "project", "reachable"):
        report.checks.append(CheckResult.skipped(check_id, TITLES[check_id], "Skipped: no configuration."))
    return report
