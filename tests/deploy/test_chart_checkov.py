"""checkov on the rendered chart (framework kubernetes) and on the Dockerfile (framework dockerfile): zero
failed checks. Every skipped check is skipped in the source next to what it concerns, with a reason —
the chart as a ``checkov.io/skipN: <ID>=<reason>`` annotation on its workloads (templates/_helpers.tpl,
``isthmus.workloadAnnotations``), the Dockerfile as a ``# checkov:skip=<ID>:<reason>`` comment — never on
the command line; and each skip is proven live: with it removed, checkov reports that very check."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / "charts" / "isthmus" / "templates" / "_helpers.tpl"
DOCKERFILE = ROOT / "Dockerfile"
CHART_SKIP = re.compile(r"^\s*checkov\.io/skip\d+:\s*(CKV\w+)=(.*)$", re.M)
DOCKER_SKIP = re.compile(r"^#\s*checkov:skip=(CKV\w+):(.*)$", re.M)
MIN_REASON = 40
DIST = ["--set", "deploymentMode=Distributed", "--set", "kafka.bootstrapServers=kafka.data:9092"]
RENDERS = {
    "all-in-one": [],
    "distributed": DIST,
    "distributed-exposed": [
        *DIST,
        *("--set", "services.agent-orchestrator.service.type=NodePort"),
        *("--set", "otel.endpoint=http://otel.obs:4317", "--set", "weaviate.url=http://weaviate.data:8080"),
        *("--set", "services.agent-orchestrator.secrets.OPENAI_API_KEY.existingSecret=llm"),
        *("--set", "services.agent-orchestrator.secrets.OPENAI_API_KEY.key=api-key"),
        *("--set", "auth.serviceClient.tokenUrl=https://idp.example.com/oauth2/token"),
        *(
            "--set",
            "auth.serviceClient.clientId=isthmus",
            "--set",
            "auth.serviceClient.clientSecretRef.name=idp",
        ),
        *("--set", "auth.serviceClient.clientSecretRef.key=secret"),
        *("--set", "access.tenants.acme.bindings[0].principal=client-abc"),
        *("--set", "access.tenants.acme.bindings[0].role=writer"),
    ],
    # the web console (on in every render: base-values.yaml) with its Ingress and its read-only Role
    "console-exposed": [
        *DIST,
        *("--set", "console.ingress.enabled=true", "--set", "console.ingress.host=console.example.com"),
        *("--set", "console.ingress.tls.secretName=console-tls", "--set", "console.service.type=NodePort"),
        *("--set", "services.console.settings.KUBE_NAMESPACE=isthmus"),
        *("--set", "services.console.secrets.OIDC_CLIENT_SECRET.existingSecret=console-oidc"),
        *("--set", "services.console.secrets.OIDC_CLIENT_SECRET.key=secret"),
    ],
}
Report = dict[str, Any]


def failed(report: Report) -> list[tuple[str, str]]:
    return sorted((c["check_id"], c["resource"]) for c in report["results"]["failed_checks"])


def skipped(report: Report) -> set[str]:
    return {c["check_id"] for c in report["results"]["skipped_checks"]}


def chart_skips() -> dict[str, str]:
    found = dict(CHART_SKIP.findall(HELPERS.read_text()))
    assert found, "no checkov skip annotations found in _helpers.tpl (did the format change?)"
    return found


def strip_skip_annotations(rendered: str) -> str:
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for d in docs:
        ann = d["metadata"].get("annotations", {})
        for key in [k for k in ann if k.startswith("checkov.io/skip")]:
            del ann[key]
    return str(yaml.safe_dump_all(docs))


@pytest.mark.parametrize("values", list(RENDERS.values()), ids=list(RENDERS))
def test_checkov_passes_the_rendered_chart(
    chart: Any, checkov_run: Callable[..., Report], values: list[str], tmp_path: Path
) -> None:
    (tmp_path / "rendered.yaml").write_text(chart.template(*values).stdout)
    report = checkov_run("-d", str(tmp_path), framework="kubernetes")
    assert failed(report) == []
    assert report["summary"]["passed"] > 50  # it did check the objects
    assert report["summary"]["parsing_errors"] == 0
    assert skipped(report) <= set(chart_skips())


def test_each_chart_skip_has_a_reason_and_still_hides_a_finding(
    chart: Any, checkov_run: Callable[..., Report], tmp_path: Path
) -> None:
    skips = chart_skips()
    for check, reason in skips.items():
        assert len(reason.strip()) >= MIN_REASON, f"{check}: give the reason ({reason!r})"
    # the render with a secret reference and no digest: what each skip is about
    (tmp_path / "rendered.yaml").write_text(
        strip_skip_annotations(chart.template(*RENDERS["distributed-exposed"]).stdout)
    )
    report = checkov_run("-d", str(tmp_path), framework="kubernetes")
    assert skipped(report) == set()
    assert {check for check, _ in failed(report)} == set(skips), "a skip no longer hides a finding: drop it"


def test_checkov_passes_the_dockerfile(checkov_run: Callable[..., Report]) -> None:
    report = checkov_run("-f", str(DOCKERFILE), framework="dockerfile")
    assert failed(report) == []
    assert report["summary"]["passed"] > 20
    skips = dict(DOCKER_SKIP.findall(DOCKERFILE.read_text()))
    assert skipped(report) == set(skips)
    for check, reason in skips.items():
        assert len(reason.strip()) >= MIN_REASON, f"{check}: give the reason ({reason!r})"


def test_each_dockerfile_skip_still_hides_a_finding(
    checkov_run: Callable[..., Report], tmp_path: Path
) -> None:
    text = DOCKERFILE.read_text()
    skips = set(dict(DOCKER_SKIP.findall(text)))
    (tmp_path / "Dockerfile").write_text(DOCKER_SKIP.sub("#", text))
    report = checkov_run("-f", str(tmp_path / "Dockerfile"), framework="dockerfile")
    assert {check for check, _ in failed(report)} == skips


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined.splitlines() if ln.strip()]


def test_the_dockerfile_builds_one_locked_non_root_image() -> None:
    ins = _instructions(DOCKERFILE.read_text())
    froms = [args for op, args in ins if op == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    for args in froms:  # both stages on the one base, the ARG (`make image` passes a locally built one)
        assert re.fullmatch(r"\$\{PYTHON_IMAGE\} AS \w+", args), args
    [base] = [args for op, args in ins if op == "ARG" and args.startswith("PYTHON_IMAGE=")]
    # its default: an exact, immutable-looking tag (no latest)
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", base), base
    runs = " ".join(args for op, args in ins if op == "RUN")
    make_uv = re.search(r'"uv==([\d.]+)"', (ROOT / "Makefile").read_text())
    assert make_uv and f'"uv=={make_uv.group(1)}"' in runs  # the same uv as `make setup`
    assert "uv sync --frozen --no-dev --all-packages --no-editable" in runs  # no dev group (llama-cpp)
    users = [args for op, args in ins if op == "USER"]
    assert users[-1].split(":")[0] == "10001"
    assert ("ENTRYPOINT", '["isthmus", "run"]') in ins and ("CMD", '["--target", "all"]') in ins
    assert set(next(args for op, args in ins if op == "EXPOSE").split()) == {"50051", "9464", "8088"}
    env = " ".join(args for op, args in ins if op == "ENV")
    for setting in ("ISTHMUS_GRPC_HOST=0.0.0.0", "ISTHMUS_DATA_DIR=/data", "ISTHMUS_LOG_FORMAT=json"):
        assert setting in env
    # the venv is built at the path the runtime stage runs it from (console scripts' shebangs)
    assert "UV_PROJECT_ENVIRONMENT=/opt/isthmus" in env
    assert ("COPY", "--from=build /opt/isthmus /opt/isthmus") in ins


def test_the_build_context_is_an_allow_list() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    allowed = {r.removeprefix("!").rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        src.rstrip("/")
        for op, args in _instructions(DOCKERFILE.read_text())
        if op == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    # every source is let in (itself or the folder it lies in), and everything let in is copied whole
    assert all(any(src == a or src.startswith(f"{a}/") for a in allowed) for src in copied), copied - allowed
    assert allowed <= copied, "COPY exactly what .dockerignore lets in"
    assert {"**/tests/", "**/__pycache__/"} <= set(rules)
