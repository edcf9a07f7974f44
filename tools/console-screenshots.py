"""Screenshots of the web console's pages for the docs: ``make console-screenshots``.

Starts the all-in-one platform with its console (``isthmus run --target all``, authentication off, a
throwaway data dir, free ports; isthmus_core.testing.platform_process), creates the tenants acme and
globex, opens each page of :data:`SHOTS` in the system Chromium (Playwright, as the browser tests) and
saves ``docs/console/<name>.png``. A shot's optional ``setup`` runs first (put data in the platform over
gRPC, click through the page...); ``ready`` is a CSS selector to wait for before the picture. JavaScript
exceptions, CSP violations and console errors on a page make the command fail (the pictures are still
written, so they can be looked at).

    .venv/bin/python tools/console-screenshots.py [--out DIR] [--only NAME]... [--url URL]

``--url`` uses a console that is already running (its platform as it is; no tenant is created)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isthmus_core.testing.browser import PageErrors, launch_chromium
from isthmus_core.testing.platform_process import create_tenants, running_platform

ROOT = Path(__file__).resolve().parents[1]
TENANTS = ("acme", "globex")
VIEWPORT = {"width": 1280, "height": 800}
#: after the load event: htmx swaps, fonts, plots (an SSE stream keeps the network busy: no networkidle)
SETTLE_MS = 750


@dataclass(frozen=True)
class Console:
    """What a setup callback gets: the console's base URL and the platform's gRPC address ("" with --url:
    only the console is known)."""

    url: str
    grpc_address: str


@dataclass(frozen=True)
class Shot:
    """One picture: ``docs/console/<name>.png`` of ``path``; ``setup(page, console)`` runs before the
    page is opened (it may open it itself); ``ready`` is a selector to wait for; ``full_page`` takes the
    whole scrolled page rather than the viewport."""

    name: str
    path: str
    setup: Callable[[Any, Console], None] | None = None
    ready: str = "main"
    full_page: bool = False


# -- the ask page: an answer streamed in, its first citation opened beside it, the provenance unfolded ---
ASK_SAMPLE = """# Apache Kafka

Apache Kafka is a distributed event streaming platform used by thousands of companies.
Kafka stores streams of records in topics, and every topic is split into partitions.
A consumer group lets several consumers share the partitions of a topic.
Each record is processed by one member of the group.
"""


def ask_setup(page: Any, console: Console) -> None:
    """The Ask page with an answer: a document uploaded (gRPC) and indexed, a question asked in the page,
    its first citation opened beside the answer and the provenance unfolded."""
    import time

    import grpc

    from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc

    if console.grpc_address:
        with grpc.insecure_channel(console.grpc_address) as channel:
            stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
            header = ingestion_pb2.UploadHeader(tenant_id="globex", filename="kafka.md", document_id="kafka")
            parts = iter(
                [
                    ingestion_pb2.UploadRequest(header=header),
                    ingestion_pb2.UploadRequest(data=ASK_SAMPLE.encode()),
                ]
            )
            stub.Upload(parts, timeout=60)
            deadline = time.monotonic() + 120
            request = ingestion_pb2.GetDocumentRequest(tenant_id="globex", document_id="kafka")
            while stub.GetDocument(request, timeout=10).status != ingestion_pb2.DOCUMENT_STATUS_INDEXED:
                if time.monotonic() > deadline:
                    raise TimeoutError("the sample document was not indexed within 120 s")
                time.sleep(0.2)
    page.goto(console.url + "/ask?tenant=globex")
    page.locator("#ask-question").fill("What does a consumer group do in Kafka?")
    page.locator("#ask-submit").click()
    page.locator("#ask-status").get_by_text("Answered.").wait_for(timeout=60_000)
    page.locator("#answer a.cite").last.click()
    page.locator("#source-panel mark").wait_for()
    page.locator("details.provenance summary").click()
    page.locator("details.provenance table.chunks").first.wait_for(timeout=60_000)


def documents_setup(page: Any, console: Console) -> None:
    """Three documents uploaded through the page, followed live to indexed."""
    from playwright.sync_api import expect

    page.goto(console.url + "/documents?tenant=acme")
    files = {
        "gliders.md": b"# Gliders\n\nGliders soar in the thermals over the ridge.\n",
        "kitty-hawk.txt": b"The Wright brothers flew at Kitty Hawk in December 1903.\n",
        "ballooning.html": b"<html><body><h1>Balloons</h1><p>Hot air rises.</p></body></html>",
    }
    page.set_input_files(
        "#upload-files",
        files=[{"name": n, "mimeType": "application/octet-stream", "buffer": b} for n, b in files.items()],
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-result .document-id")).to_have_count(len(files))
    expect(page.locator("#document-rows tr[data-status=indexed]")).to_have_count(len(files), timeout=120_000)


# -- the tenants page: two policy versions and their diff, two prompt versions split 50/50 --------------
def tenants_setup(page: Any, console: Console) -> None:
    import grpc

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as orc_pb
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as orc_grpc
    from isthmus.guardrail.v1 import guardrail_pb2 as grd_pb
    from isthmus.guardrail.v1 import guardrail_pb2_grpc as grd_grpc

    if console.grpc_address:
        with grpc.insecure_channel(console.grpc_address) as ch:
            guardrail = grd_grpc.GuardrailServiceStub(ch)
            guardrail.PutPolicy(
                grd_pb.Policy(tenant_id="acme", injection_threshold=0.7, grounding_threshold=0.5)
            )
            guardrail.PutPolicy(grd_pb.Policy(tenant_id="acme", injection_threshold=0.85, redact_pii=True))
            prompts = orc_grpc.AgentOrchestratorServiceStub(ch)
            for template in ("Answer from {contexts} only.\n{question}", "Cite {contexts}.\nQ: {question}"):
                prompts.CreatePromptVersion(
                    orc_pb.CreatePromptVersionRequest(tenant_id="acme", name="synthesize", template=template)
                )
            prompts.SetPromptSplit(
                orc_pb.SetPromptSplitRequest(
                    tenant_id="acme", name="synthesize", percent={"v1": 50, "v2": 50}
                )
            )
    page.goto(console.url + "/tenants?tenant=acme")
    page.get_by_role("button", name="View and diff policy v2").click()
    page.locator("#policy-view pre.diff").wait_for()


# -- the evaluation page: a few answers for the online metrics, a tiny dataset run through the page ------
_CORPUS = [
    {"_id": "glider", "title": "Gliders", "text": "A glider flies without an engine, soaring on thermals."},
    {"_id": "marmot", "title": "Marmots", "text": "Marmots hibernate in burrows through the alpine winter."},
    {"_id": "pelican", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
    {"_id": "kiln", "title": "Kilns", "text": "A kiln fires clay pots at very high temperatures."},
]
_QUERIES = {
    "q1": "how do marmots spend the winter",
    "q2": "pelican throat pouch",
    "q3": "aircraft without an engine",
}
_QRELS = {"q1": "marmot", "q2": "pelican", "q3": "glider"}


def evaluation_setup(page: Any, console: Console) -> None:
    import json

    import grpc

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as orc_pb
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as orc_grpc

    if console.grpc_address:
        with grpc.insecure_channel(console.grpc_address) as ch:
            ask = orc_grpc.AgentOrchestratorServiceStub(ch).Ask
            for question in ("what do marmots do in winter?", "how does a glider fly?", "what is a kiln?"):
                ask(orc_pb.AskRequest(tenant_id="acme", question=question), timeout=120)
    page.goto(console.url + "/evaluation?tenant=acme")
    page.get_by_label("Dataset name").fill("tiny")
    files = {
        "corpus.jsonl": "".join(json.dumps(d) + "\n" for d in _CORPUS),
        "queries.jsonl": "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in _QUERIES.items()),
        "qrels/test.tsv": "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t1\n" for q, d in _QRELS.items()),
    }
    for label, text in files.items():
        name = label.rsplit("/", 1)[-1]
        page.get_by_label(label).set_input_files(
            {"name": name, "mimeType": "text/plain", "buffer": text.encode()}
        )
    page.get_by_label("hybrid", exact=True).uncheck()
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_role("heading", name="Report: tiny").wait_for(timeout=240_000)
    page.wait_for_function("() => [...document.querySelectorAll('main img')].every(i => i.complete)")


#: the console's pages, in nav order; page helpers add their setup (sample data) here
SHOTS: list[Shot] = [
    # (globex: the documents shot counts acme's documents)
    Shot("ask", "/ask?tenant=globex", setup=ask_setup, ready="#ask-final .verdicts", full_page=True),
    Shot(
        "documents", "/documents?tenant=acme", setup=documents_setup, ready="#document-rows", full_page=True
    ),
    Shot("tenants", "/tenants?tenant=acme", tenants_setup, ready="#policy-view pre.diff", full_page=True),
    Shot("evaluation", "/evaluation?tenant=acme", evaluation_setup, ready="#run-report img", full_page=True),
    # the operations page once its consumer lag and dead letters have loaded (htmx)
    Shot("operations", "/operations", ready="#consumers table, #dead-letters p"),
]


def take(shots: Sequence[Shot], console: Console, out: Path) -> list[str]:
    """Save each shot under ``out``; the problems the pages had (empty: all clean)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for shot in shots:
                context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
                context.set_default_timeout(30_000)
                errors = PageErrors()
                page = context.new_page()
                errors.attach(page)
                try:
                    if shot.setup is not None:
                        shot.setup(page, console)
                    if not page.url.startswith(console.url + shot.path):  # unless setup opened it
                        page.goto(console.url + shot.path)
                    page.locator(shot.ready).first.wait_for()
                    page.wait_for_timeout(SETTLE_MS)
                    target = out / f"{shot.name}.png"
                    page.screenshot(path=str(target), full_page=shot.full_page)
                    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
                    print(f"console-screenshots: {shown}")
                except Exception as exc:  # one broken page does not stop the others
                    problems.append(f"{shot.name}: {type(exc).__name__}: {exc}")
                finally:
                    problems.extend(f"{shot.name}: {p}" for p in errors.problems())
                    context.close()
        finally:
            browser.close()
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console", help="where the PNGs go")
    parser.add_argument("--only", action="append", default=[], help="a shot's name (repeatable)")
    parser.add_argument("--url", default="", help="a running console instead of starting a platform")
    args = parser.parse_args(argv)
    known = {s.name for s in SHOTS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown shot(s) {unknown}; known: {sorted(known)}")
    shots = [s for s in SHOTS if not args.only or s.name in args.only]
    if args.url:
        problems = take(shots, Console(args.url.rstrip("/"), ""), args.out)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="isthmus-screenshots-") as tmp,
            running_platform(Path(tmp)) as platform,
        ):
            print(f"console-screenshots: platform ready, console at {platform.url}")
            create_tenants(platform.grpc_address, TENANTS)
            problems = take(shots, Console(platform.url, platform.grpc_address), args.out)
    for problem in problems:
        print(f"console-screenshots: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
