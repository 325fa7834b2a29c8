"""Auditing in the Temporal Web UI: search attributes, the README's query cookbook, and
a real browser on the dev server's UI after the seed's mission has played.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import Client

from activities.keys import Keyring
from activities.store import EventStore
from corridor import service
from corridor.codec import data_converter
from corridor.codec_server import CodecServer, codec_app
from corridor.demo import play
from corridor.imports import load_journal, load_programme, load_roster
from corridor.runtime import build_worker
from corridor.stack import TemporalDevServer, free_port
from corridor.temporal import register_search_attributes
from domain.commands import EnrollFirm
from domain.programme import Firm
from tests.conftest import MASTER_KEY, make_programme
from workflows import search

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "web-ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.timeout(240)


@dataclass
class Played:
    server: TemporalDevServer
    client: Client
    programme_id: str
    late_programme_id: str
    codec_log: io.StringIO


@pytest.fixture(scope="module")
async def played(
    tmp_session: Path, store: EventStore, keyring: Keyring, examples: Path
) -> AsyncIterator[Played]:
    """A dev server with its Web UI, after the seed's mission played on it, encrypted.

    As ``corridor dev`` runs it: every payload encrypted with its journey's key, and the
    Web UI pointed at a codec server (the token in the endpoint's path) that logs each
    decode. A second programme holds one firm enrolled years after its introduction, in
    real time: it catches up at once and waits for its evaluation decision.
    """
    ui_port, token = free_port(), uuid.uuid4().hex
    codec_log = io.StringIO()
    codec_logger = logging.getLogger("corridor.codec_server")
    handler = logging.StreamHandler(codec_log)
    codec_logger.addHandler(handler)
    codec_logger.setLevel(logging.INFO)
    codec = CodecServer(
        codec_app(keyring, {token: "web-ui"}, f"http://127.0.0.1:{ui_port}"),
        "127.0.0.1",
        free_port(),
    )
    await codec.__aenter__()
    server = TemporalDevServer(
        port=free_port(),
        ui_port=ui_port,
        search_attributes=search.ALL,
        log_file=tmp_session / "ui-temporal.log",
        ui_codec_endpoint=f"{codec.url}/{token}",
    )
    await server.start()
    client = await Client.connect(server.address, data_converter=data_converter(keyring, "default"))
    task_queue = f"ui-{uuid.uuid4()}"
    worker = build_worker(client, store, task_queue)
    running = asyncio.create_task(worker.run())
    try:
        programme = load_programme(examples / "programme.toml").model_copy(
            update={"id": f"ui-{uuid.uuid4().hex[:8]}"}
        )
        outcome = await play(
            client,
            programme,
            load_roster(examples / "roster.csv", programme),
            load_journal(examples / "journal.csv", programme),
            task_queue=task_queue,
            until=date(2016, 11, 29),
        )
        assert outcome.refused == []
        late = make_programme(f"late-{uuid.uuid4().hex[:8]}")
        await service.enroll(
            client,
            EnrollFirm(
                occurred_on=date(2013, 9, 18),
                programme=late,
                firm=Firm(id="tardive", name="Entreprise Tardive"),
                mission_id="m1",
            ),
            task_queue=task_queue,
        )
        await service.sync(client, late.id, "tardive")
        yield Played(server, client, programme.id, late.id, codec_log)
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
        await server.stop()
        await codec.__aexit__(None, None, None)
        codec_logger.removeHandler(handler)


async def _firms(client: Client, programme_id: str, query: str) -> set[str]:
    full = f"CorridorProgramme = '{programme_id}' AND ({query})"
    return {w.id.rsplit("/", 1)[1] async for w in client.list_workflows(full)}


async def _eventually(client: Client, programme_id: str, query: str, expected: set[str]) -> None:
    """Visibility is eventually consistent: wait a little for the expected answer."""
    found: set[str] = set()
    for _ in range(50):
        found = await _firms(client, programme_id, query)
        if found == expected:
            return
        await asyncio.sleep(0.2)
    assert found == expected, query


def _cookbook() -> list[tuple[str, str, set[str]]]:
    """The README's query cookbook: (what, query, firms expected after the demo)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Query cookbook", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| `([^`]+)` \| ([^|]+?) \|$", section, re.MULTILINE)
    cookbook = []
    for what, query, answer in rows:
        firms = set() if answer.startswith("none") else {f.strip() for f in answer.split(",")}
        cookbook.append((what, query, firms))
    return cookbook


def test_the_readme_has_a_query_cookbook() -> None:
    queries = [query for _, query, _ in _cookbook()]
    assert len(queries) >= 8
    assert "CorridorStage = 'awaiting_decision'" in queries
    assert "CorridorResultOverdue = true" in queries


async def test_every_cookbook_query_finds_the_journeys_the_readme_says(played: Played) -> None:
    for _what, query, expected in _cookbook():
        await _eventually(played.client, played.programme_id, query, expected)


async def test_a_journey_awaiting_its_decision_is_found_by_stage(played: Played) -> None:
    await _eventually(
        played.client, played.late_programme_id, "CorridorStage = 'awaiting_decision'",
        {"tardive"},
    )
    await _eventually(
        played.client, played.late_programme_id, "CorridorDecision = 'pending'", {"tardive"}
    )


async def test_search_attributes_describe_the_journey(played: Played) -> None:
    handle = played.client.get_workflow_handle(f"journey/{played.programme_id}/caprouge")
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search.FIRM) == "caprouge"
    assert attributes.get(search.MISSION) == "m3-2014-11"
    assert attributes.get(search.STAGE) == "contracted"
    assert attributes.get(search.CONTRACTS) == 1
    assert attributes.get(search.MEETINGS_HELD) == 1
    assert list(attributes.get(search.PARTNERS) or []) == ["labizfed"]
    assert attributes.get(search.DECISION) == "renew"
    assert attributes.get(search.NEXT_DEADLINE_KIND) == "visit_reminder"
    deadline = attributes.get(search.NEXT_DEADLINE)
    assert deadline is not None and deadline.date() == date(2017, 4, 20)


async def test_setup_registers_the_search_attributes_once(tmp_path: Path) -> None:
    bare = TemporalDevServer(port=free_port(), headless=True, log_file=tmp_path / "t.log")
    async with bare:
        client = await Client.connect(bare.address)
        added = await register_search_attributes(client)
        assert sorted(added) == sorted(key.name for key in search.ALL)
        assert await register_search_attributes(client) == []


async def test_status_filters_by_query_and_links_each_journey(played: Played, dsn: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CORRIDOR_", "TEMPORAL_"))},
        "TEMPORAL_ADDRESS": played.server.address,
        "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY,
        "CORRIDOR_UI_URL": played.server.ui_url or "",
        "CORRIDOR_DATA_DIR": str(ROOT / "artifacts" / "no-stack"),
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "corridor"),
        "status",
        "--programme",
        played.programme_id,
        "--query",
        "CorridorStage = 'closed'",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    text = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    for firm in ("nordik", "capitale", "saintroch"):
        workflow_id = quote(f"journey/{played.programme_id}/{firm}", safe="")
        link = f"/namespaces/default/workflows/{workflow_id}"
        assert firm in text
        assert link in text.replace("\n", "").replace(" ", "").replace("│", "")
    assert "trifide" not in text


async def test_a_browser_lists_journeys_by_stage_and_shows_one_in_plain_words(
    played: Played,
) -> None:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before any I/O
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs it")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui = played.server.ui_url
    assert ui is not None
    pid = played.programme_id
    query = f"CorridorProgramme = '{pid}' AND CorridorStage = 'closed'"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{ui}/namespaces/default/workflows?query={quote(query)}")
            for firm in ("nordik", "capitale", "saintroch"):
                await page.get_by_text(f"journey/{pid}/{firm}").first.wait_for(timeout=20_000)
            await page.screenshot(path=str(ARTIFACTS / "closed-journeys.png"), full_page=True)
            assert await page.get_by_text(f"journey/{pid}/trifide").count() == 0

            await page.get_by_text(f"journey/{pid}/saintroch").first.click()
            await page.get_by_text("User Metadata").first.wait_for(timeout=20_000)
            timeline = page.get_by_text("return visit 4 due 2016-11-18").first
            await timeline.wait_for(timeout=20_000)
            await page.screenshot(path=str(ARTIFACTS / "journey-timeline.png"), full_page=True)

            await page.get_by_text("User Metadata").first.click()
            await page.get_by_text("Current Details").first.wait_for(timeout=20_000)
            body = ""
            for _ in range(40):  # the details are rendered in a frame of their own
                texts = []
                for frame in page.frames:
                    with contextlib.suppress(PlaywrightError):  # a frame may go away
                        texts.append(await frame.inner_text("body", timeout=2_000))
                body = "\n".join(texts)
                if "Stage:" in body:
                    break
                await asyncio.sleep(0.25)
            await page.screenshot(path=str(ARTIFACTS / "journey-details.png"), full_page=True)

            # The workflow's input, decoded by the codec server: the contact is there.
            nordik = quote(f"journey/{pid}/nordik", safe="")
            await page.goto(f"{ui}/namespaces/default/workflows/{nordik}")
            editor = page.locator(".cm-scroller >> visible=true").first
            await editor.wait_for(timeout=20_000)
            await page.get_by_text('"enrollment"').first.wait_for(timeout=20_000)
            contact = ""
            for _ in range(80):  # the editor renders the lines in view: scroll through it
                contact += await editor.inner_text()
                if "elise.tremblay@nordik.example" in contact:
                    break
                await editor.evaluate("node => { node.scrollTop += 150; }")
                await asyncio.sleep(0.1)
            await page.screenshot(path=str(ARTIFACTS / "journey-input.png"), full_page=True)
        finally:
            await browser.close()
    assert "elise.tremblay@nordik.example" in contact
    decodes = played.codec_log.getvalue()
    assert "codec.decoded" in decodes and "web-ui" in decodes and f"journey/{pid}/nordik" in decodes
    assert "elise" not in decodes
    assert "Stage: closed" in body
    assert "Next deadline: none (journey over)" in body
    assert "cycle 1 evaluated: journey closed" in body
    assert "Saint-Roch Santé Numérique (fictional)" in body
