"""A folder of mixed office files through `isthmus ingest` on the all-in-one platform (issue 18): every
file ends indexed, or rejected/failed/unsupported with a reason; an e-mail's attachments become documents
of their own; GetDocumentText returns the parsed text that search hits' offsets point into."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.client import run_cli
from isthmus_ingestion.testing import (
    encrypted_office_file,
    make_docx,
    make_eml,
    make_mbox,
    make_pptx,
    make_xlsx,
)

from .conftest import platform

pytestmark = [pytest.mark.slow]

TENANT = "club"
WINCH = "The winch cable of the club is replaced after every two hundred launches."


def _folder(root: Path) -> dict[str, bytes]:
    fleet = make_xlsx({"Fleet": [["Glider", "Seats", "Hangar"], ["ASK 21", 2, "North"], ["LS4", 1, "South"]]})
    files = {
        "manual/winch.docx": make_docx(
            ["Launching is done by winch or aerotow.", WINCH, "Weak links are colour coded."],
            title="Winch manual",
        ),
        "briefing.pptx": make_pptx([("Morning briefing", "Wind from the west\nRunway 27 in use")]),
        "fleet.xlsx": fleet,
        "pilots.csv": b"Name,Licence,Hours\nAnn,SPL,310\nBob,student,12\n",
        "export.json": b'[{"title": "Ridge day", "text": "The ridge worked from noon until five."}]',
        "log.jsonl": b'{"text": "Flight one landed at the field."}\n{"text": "Flight two went cross-country."}\n',
        "mail/season.eml": make_eml(
            "Fleet list",
            "Attached is the fleet list and a photo.",
            attachments=[
                ("fleet.xlsx", fleet, "application/octet-stream"),
                ("photo.png", b"\x89PNG\r\n\x1a\n", "image/png"),
            ],
        ),
        "mail/club.mbox": make_mbox(
            [
                make_eml("Thermal forecast", "Strong thermals expected on Sunday."),
                make_eml("Dues", "Dues are due."),
            ]
        ),
        "broken.docx": make_docx(["cut off"])[:300],
        "locked.xlsx": encrypted_office_file(),
        "numbers.csv": b"1,2,3\n4,5,6\n",
        "picture.png": b"\x89PNG\r\n\x1a\n" + bytes(16),
        "README": b"no extension",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


async def test_a_folder_of_mixed_office_files_and_the_parsed_text_behind_search_hits(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    files = _folder(docs)
    async with platform(
        tmp_path / "data", ingestion={"chunk_max_tokens": 48, "chunk_overlap_tokens": 8}
    ) as rt:
        ep = rt.address
        assert (await run_cli("tenant", "create", TENANT, endpoint=ep))[0] == 0
        code, out, _ = await run_cli("ingest", str(docs), "--tenant", TENANT, "--json", endpoint=ep)
        assert code == 1, "rejected and unsupported files make the command fail"
        rows = {
            str(Path(r["path"]).relative_to(docs)) if " > " not in r["path"] else r["path"]: r
            for r in json.loads(out)
        }

        # every file of the folder has a row: indexed, or with a reason
        assert set(files) <= set(rows), set(files) - set(rows)
        indexed = [
            "manual/winch.docx",
            "briefing.pptx",
            "fleet.xlsx",
            "pilots.csv",
            "export.json",
            "log.jsonl",
        ]
        for name in [*indexed, "mail/season.eml", "mail/club.mbox"]:
            assert rows[name]["status"] == "indexed", rows[name]
        reasons = {
            "broken.docx": "corrupt Word document",
            "locked.xlsx": "encrypted Excel workbook",
            "numbers.csv": "CSV without a header",
        }
        for name, reason in reasons.items():
            assert rows[name]["status"] == "rejected" and reason in rows[name]["error"], rows[name]
        assert rows["picture.png"] == {
            "path": str(docs / "picture.png"),
            "status": "unsupported",
            "error": rows["picture.png"]["error"],
        }
        assert rows["picture.png"]["error"].startswith("unsupported file extension '.png'; supported: ")
        assert rows["README"]["status"] == "unsupported" and "no file extension" in rows["README"]["error"]

        # the e-mail's attachments and the mailbox's messages are documents of their own
        season = rows["mail/season.eml"]["document_id"]
        children = {
            p.split(" > ")[1]: r for p, r in rows.items() if p.startswith(str(docs / "mail/season.eml"))
        }
        assert set(children) == {"fleet.xlsx", "photo.png"}
        # the same workbook as fleet.xlsx: a duplicate, indexed once
        assert children["fleet.xlsx"]["document_id"] == rows["fleet.xlsx"]["document_id"]
        assert children["photo.png"]["status"] == "failed"
        assert children["photo.png"]["parent_document_id"] == season
        assert "unsupported content type 'image/png'" in children["photo.png"]["error"]
        messages = [r for p, r in rows.items() if p.startswith(str(docs / "mail/club.mbox") + " > ")]
        assert [r["status"] for r in messages] == ["indexed", "indexed"]

        ch = grpc.aio.insecure_channel(ep)
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
        search = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        photo = await ingestion.GetDocument(
            ingestion_pb2.GetDocumentRequest(
                tenant_id=TENANT, document_id=children["photo.png"]["document_id"]
            )
        )
        assert photo.parent_document_id == season

        # a search hit's offsets point into the text GetDocumentText returns
        winch = rows["manual/winch.docx"]["document_id"]
        resp = await search.Search(
            retrieval_pb2.SearchRequest(
                tenant_id=TENANT, query="How often is the winch cable replaced?", top_k=5
            )
        )
        hit = next(h for h in resp.hits if h.context.document_id == winch)
        part = await ingestion.GetDocumentText(
            ingestion_pb2.GetDocumentTextRequest(
                tenant_id=TENANT, document_id=winch, start=hit.context.start, end=hit.end
            )
        )
        assert part.text == hit.context.text and WINCH in part.text
        whole = await ingestion.GetDocumentText(
            ingestion_pb2.GetDocumentTextRequest(tenant_id=TENANT, document_id=winch)
        )
        assert (whole.title, whole.length) == ("Winch manual", len(whole.text))
        assert whole.text[hit.context.start : hit.end] == hit.context.text

        # the spreadsheet's rows are records with their headers
        sheet = await ingestion.GetDocumentText(
            ingestion_pb2.GetDocumentTextRequest(
                tenant_id=TENANT, document_id=rows["fleet.xlsx"]["document_id"]
            )
        )
        assert (
            sheet.text
            == "Fleet\n\nGlider: ASK 21; Seats: 2; Hangar: North\n\nGlider: LS4; Seats: 1; Hangar: South"
        )

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ingestion.GetDocumentText(
                ingestion_pb2.GetDocumentTextRequest(tenant_id=TENANT, document_id=winch, start=5, end=2)
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "start (5) is after end (2)" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ingestion.GetDocumentText(
                ingestion_pb2.GetDocumentTextRequest(tenant_id=TENANT, document_id=photo.document_id)
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        await ch.close()
