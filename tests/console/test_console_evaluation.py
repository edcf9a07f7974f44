"""The evaluation page in a real browser: a tiny BEIR dataset uploaded in the form is evaluated, the
progress and the report arrive over Server-Sent Events, the report's SVG plots load (from their own URL,
under the strict CSP) beside their tables; the online metrics section loads its plots; axe-core finds no
serious or critical problem before and after the run; the keyboard alone reaches the form's controls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import ConsolePlatform
from .test_console_tenants import tab_to

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CORPUS = [
    {"_id": "glider", "title": "Gliders", "text": "A glider flies without an engine, soaring on thermals."},
    {"_id": "marmot", "title": "Marmots", "text": "Marmots hibernate in burrows through the alpine winter."},
    {"_id": "pelican", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
]
QUERIES = {
    "q1": "how do marmots spend the winter",
    "q2": "pelican throat pouch",
    "q3": "aircraft without an engine",
}
QRELS = {"q1": "marmot", "q2": "pelican", "q3": "glider"}


def _file(name: str, text: str, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": text.encode()}


def _loaded(page: Any, img: Any) -> bool:
    return bool(img.evaluate("i => i.complete && i.naturalWidth > 0"))


def test_an_uploaded_dataset_runs_to_a_report_with_plots(
    console_platform: ConsolePlatform, page: Any, axe_check: Any, tmp_path: Path
) -> None:
    page.goto(console_platform.page_url("/evaluation"))
    assert page.get_by_role("heading", name="Evaluation", exact=True).is_visible()
    assert not axe_check(page)
    for control in ("#ds-name", "#ds-corpus", "#ds-queries", "#ds-qrels", "#mode-1", "#judge"):
        assert tab_to(page, control), f"Tab never reaches {control}"
    assert tab_to(page, "form[hx-post='/evaluation/run'] button[type=submit]")

    page.get_by_label("Dataset name").fill("tiny-browser")
    page.get_by_label("corpus.jsonl").set_input_files(
        _file("corpus.jsonl", "".join(json.dumps(d) + "\n" for d in CORPUS), "application/json")
    )
    page.get_by_label("queries.jsonl").set_input_files(
        _file(
            "queries.jsonl",
            "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()),
            "application/json",
        )
    )
    page.get_by_label("qrels/test.tsv").set_input_files(
        _file(
            "test.tsv",
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items()),
            "text/plain",
        )
    )
    for mode in ("dense", "hybrid"):  # bm25 alone: quick
        page.get_by_label(mode, exact=True).uncheck()
    page.get_by_role("button", name="Run evaluation").click()
    report = page.get_by_role("heading", name="Report: tiny-browser")
    report.wait_for(timeout=240_000)
    plot = page.locator("#run-report img").first
    plot.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#run-report img')].every(i => i.complete)")
    for img in page.locator("#run-report img").all():
        assert _loaded(page, img), img.get_attribute("src")
        assert "bm25" in (img.get_attribute("alt") or "")
    assert page.get_by_role("table", name="Retrieval quality per mode").is_visible()
    assert page.get_by_role("link", name="Report of tiny-browser").is_visible()  # the session's runs
    assert not axe_check(page)
    page.screenshot(path=str(tmp_path / "evaluation.png"), full_page=True)


def test_online_metrics_load_their_plots(
    console_platform: ConsolePlatform, page: Any, axe_check: Any
) -> None:
    page.goto(console_platform.page_url("/evaluation"))
    page.locator("#online img").first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#online img')].every(i => i.complete)")
    imgs = page.locator("#online img").all()
    assert len(imgs) == 3
    for img in imgs:
        assert _loaded(page, img), img.get_attribute("src")
        assert "all tenants" in (img.get_attribute("alt") or "")
    assert tab_to(page, "#online-range"), "Tab never reaches the online range"
    assert not axe_check(page)
