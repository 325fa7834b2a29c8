"""Personal data on the real servers: encrypted everywhere, readable by those entitled,
erasable on request (issue 11).

The seed's mission is played on a Temporal dev server that keeps its state in a file,
with Corridor's codec on the client and the worker. Then: no contact name or e-mail of
the roster appears in any journey's history (``temporal workflow show --output json``),
in the bytes of Temporal's database file, in the events table or in the logs; the codec
server shows them to a token holder and refuses others; ``corridor forget`` makes a
firm's data unreadable everywhere and leaves the bilan's figures as they were; a key
rotation leaves everything readable; a journey started before encryption goes on,
encrypted from then on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.keys import Keyring, MasterKey, MasterKeys, write_key_file
from activities.migrations import migrate_database
from activities.store import EventStore
from corridor import erasure, service
from corridor.codec import ENCODING, KEY_ID, PayloadErased, data_converter
from corridor.codec_server import CodecServer, codec_app
from corridor.demo import play
from corridor.imports import load_journal, load_programme, load_roster
from corridor.logs import configure_logging
from corridor.runtime import build_worker
from corridor.stack import TemporalDevServer, find_temporal_binary, free_port
from domain.calendar import ProgrammeClock, zone
from domain.commands import EnrollFirm, RequestMeeting
from domain.programme import ERASED, Firm
from tests.conftest import MASTER_KEY, make_programme
from workflows import search
from workflows.journey import FirmJourney, journey_workflow_id

pytestmark = pytest.mark.timeout(300)

TOKEN = "auditor-token-" + uuid.uuid4().hex
UI_ORIGIN = "http://127.0.0.1:8233"
CORRIDOR = os.path.join(os.path.dirname(sys.executable), "corridor")


@dataclass
class Played:
    server: TemporalDevServer
    db_file: Path
    client: Client
    programme_id: str
    firms: list[Firm]
    log: str


def _contacts(firms: list[Firm]) -> list[str]:
    found = [f.contact_name for f in firms if f.contact_name]
    found += [f.contact_email for f in firms if f.contact_email]
    assert len(found) == 2 * len(firms), "every firm of the roster has a contact"
    return [text for text in found if text is not None]


@pytest.fixture(scope="module")
async def played(
    tmp_session: Path, keyring: Keyring, store: EventStore, examples: Path
) -> AsyncIterator[Played]:
    """The seed's mission played on a file-backed dev server, encrypted, logs captured."""
    db_file = tmp_session / f"privacy-{uuid.uuid4().hex[:6]}.db"
    server = TemporalDevServer(
        port=free_port(),
        headless=True,
        db_file=db_file,
        search_attributes=search.ALL,
        log_file=tmp_session / "privacy-temporal.log",
    )
    await server.start()
    client = await Client.connect(server.address, data_converter=data_converter(keyring, "default"))
    task_queue = f"privacy-{uuid.uuid4()}"
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    worker = build_worker(client, store, task_queue)
    running = asyncio.create_task(worker.run())
    try:
        programme = load_programme(examples / "programme.toml").model_copy(
            update={"id": f"priv-{uuid.uuid4().hex[:8]}"}
        )
        roster = load_roster(examples / "roster.csv", programme)
        outcome = await play(
            client,
            programme,
            roster,
            load_journal(examples / "journal.csv", programme),
            task_queue=task_queue,
            until=date(2016, 11, 29),
        )
        assert outcome.refused == []
        firms = [command.firm for command in roster]
        yield Played(server, db_file, client, programme.id, firms, buffer.getvalue())
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
        configure_logging("WARNING", json=False)
        await server.stop()


def _payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every payload (``metadata`` and ``data``) in a history's JSON.

    Search attributes aside: Temporal indexes them, so they are never encoded (they
    hold ids, stages, dates and counts only: ``workflows.search``); and the patch
    markers' names, which the SDK's core records itself (``describe-each-run``).
    """
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node["metadata"], dict) and (
            "encoding" in node["metadata"]
        ):
            yield node
        for key, value in node.items():
            if key not in ("searchAttributes", "patch-data"):
                yield from _payloads(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payloads(item)


async def _show(address: str, workflow_id: str, *codec: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(find_temporal_binary()), "workflow", "show", "--address", address,
        "--workflow-id", workflow_id, "--output", "json", *codec,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_no_contact_appears_in_any_history_and_every_payload_uses_its_journeys_key(
    played: Played,
) -> None:
    contacts = _contacts(played.firms)
    encoding = base64.b64encode(ENCODING).decode()
    for firm in played.firms:
        workflow_id = journey_workflow_id(played.programme_id, firm.id)
        text = await _show(played.server.address, workflow_id)
        for contact in contacts:
            assert contact not in text, (workflow_id, contact)
        payloads = list(_payloads(json.loads(text)))
        assert payloads
        for payload in payloads:
            assert payload["metadata"]["encoding"] == encoding, payload["metadata"]
            key = base64.b64decode(payload["metadata"][KEY_ID]).decode()
            assert key == workflow_id  # the journey's own key: erasing it erases all


async def test_temporals_database_file_holds_no_contact(played: Played) -> None:
    blob = b"".join(
        path.read_bytes()
        for path in played.db_file.parent.glob(played.db_file.name + "*")
    )
    assert len(blob) > 100_000
    assert b"journey/" + played.programme_id.encode() in blob  # ids are there, in clear
    for contact in _contacts(played.firms):
        assert contact.encode() not in blob, contact
        assert contact.encode("utf-16-le") not in blob, contact


async def test_the_events_table_and_read_models_hold_no_contact_yet_read_them(
    played: Played, store: EventStore
) -> None:
    rows = await store.pool.fetch(
        "SELECT data::text AS text FROM events WHERE stream_id LIKE $1 "
        "UNION ALL SELECT state::text FROM journeys WHERE programme_id = $2",
        f"journey/{played.programme_id}/%",
        played.programme_id,
    )
    text = "\n".join(r["text"] for r in rows)
    assert '"contact_email": "enc:v1:' in text
    for contact in _contacts(played.firms):
        assert contact not in text, contact
    nordik = next(f for f in played.firms if f.id == "nordik")
    stream = await store.read_stream(journey_workflow_id(played.programme_id, "nordik"))
    enrolled: Any = stream[0].event
    assert enrolled.firm.contact_name == nordik.contact_name == "Élise Tremblay"
    states = await store.journey_states(played.programme_id, "nordik")
    assert [s.firm.contact_email for s in states.values()] == [nordik.contact_email]
    # The outbox's messages (addresses and bodies) are sealed with their journey's key.
    outbox = await store.pool.fetch(
        "SELECT to_address, convert_from(message, 'UTF8') AS body FROM outbox "
        "WHERE programme_id = $1 AND stream_id IS NOT NULL",
        played.programme_id,
    )
    assert outbox, "the seed's journeys wrote messages to the outbox"
    for row in outbox:
        assert row["to_address"].startswith("enc:v1:"), row["to_address"]
        assert row["body"].startswith("enc:v1:"), row["body"][:40]


async def test_the_logs_hold_no_contact(played: Played) -> None:
    assert "store_events.done" in played.log
    server_log = Path(played.server.log_file or "").read_text(errors="replace")  # noqa: ASYNC240
    for contact in _contacts(played.firms):
        assert contact not in played.log, contact
        assert contact not in server_log, contact


# ------------------------------------------------------------------ codec server


@pytest.fixture
async def codec_server(keyring: Keyring) -> AsyncIterator[tuple[str, io.StringIO]]:
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    app = codec_app(keyring, {TOKEN: "auditor-ann"}, UI_ORIGIN)
    try:
        async with CodecServer(app, "127.0.0.1", free_port()) as server:
            yield server.url, buffer
    finally:
        configure_logging("WARNING", json=False)


async def test_the_codec_server_decodes_for_a_token_holder_and_logs_who_and_which_workflow(
    played: Played, codec_server: tuple[str, io.StringIO]
) -> None:
    url, log = codec_server
    workflow_id = journey_workflow_id(played.programme_id, "nordik")
    text = await _show(
        played.server.address, workflow_id,
        "--codec-endpoint", url, "--codec-auth", f"Bearer {TOKEN}",
    )
    assert "elise.tremblay@nordik.example" in _readable(text)
    assert "Élise Tremblay" in _readable(text)
    lines = [json.loads(line) for line in log.getvalue().splitlines() if "codec.decoded" in line]
    assert lines and all(line["who"] == "auditor-ann" for line in lines)
    assert any(workflow_id in line["workflows"] for line in lines)
    assert "elise" not in log.getvalue() and TOKEN not in log.getvalue()


def _readable(text: str) -> str:
    """The JSON text and the base64 data of every payload in it, decoded."""
    parts = [text]
    for payload in _payloads(json.loads(text)):
        data = payload.get("data")
        if isinstance(data, str):
            try:
                parts.append(base64.b64decode(data).decode())
            except ValueError:
                continue
        else:
            parts.append(json.dumps(data, ensure_ascii=False))
    return "\n".join(parts)


async def test_the_codec_server_refuses_a_missing_or_wrong_token_and_other_origins(
    played: Played, codec_server: tuple[str, io.StringIO]
) -> None:
    url, _ = codec_server
    history = await played.client.get_workflow_handle(
        journey_workflow_id(played.programme_id, "nordik")
    ).fetch_history()
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    body = json_format.MessageToJson(Payloads(payloads=[payload]))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/decode", data=body) as missing:
            assert missing.status == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        async with http.post(f"{url}/decode", data=body, headers=wrong) as refused:
            assert refused.status == 403
            assert "Tremblay" not in await refused.text()
        async with http.post(f"{url}/not-the-token-at-all/decode", data=body) as refused:
            assert refused.status == 403
        async with http.post(f"{url}/{TOKEN}/decode", data=body) as decoded:  # the UI's way
            assert decoded.status == 200
            assert "Tremblay" in base64.b64decode(
                (await decoded.json())["payloads"][0]["data"]
            ).decode()
        preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/decode", headers=preflight) as allowed:
            assert allowed.headers.get("Access-Control-Allow-Origin") == UI_ORIGIN
        other = {"Origin": "http://127.0.0.1:9999", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/decode", headers=other) as foreign:
            assert "Access-Control-Allow-Origin" not in foreign.headers


# ---------------------------------------------------------------------- erasure


async def test_forget_makes_the_firms_data_unreadable_everywhere_and_keeps_the_bilan(
    played: Played, store: EventStore, keyring: Keyring, dsn: str
) -> None:
    before = await store.bilan(played.programme_id)
    assert before is not None and before.contracts == 5
    stream_id = journey_workflow_id(played.programme_id, "trifide")  # running, renewed

    done = await erasure.forget(
        played.client, store, played.programme_id, "trifide",
        reason="Law 25 request 2026-014", by="privacy officer",
    )
    assert done.terminated and done.key_destroyed

    # The event store: the tombstone, its old events read and replay as [erased].
    stream = await store.read_stream(stream_id)
    assert stream[-1].event.type == "FirmErased"
    first: Any = stream[0].event
    assert first.firm.contact_name == ERASED and first.firm.contact_email == ERASED
    assert first.firm.name == "Groupe Trifide"  # a company's name, not personal data
    assert any(getattr(e.event, "notes", "") == ERASED for e in stream)
    await store.rebuild_read_models()
    after = await store.bilan(played.programme_id)
    assert after is not None
    assert after.model_dump(exclude={"rows"}) == before.model_dump(exclude={"rows"})
    row = next(r for r in after.rows if r.firm_id == "trifide")
    assert row.firm_name == f"Groupe Trifide {ERASED}"
    old = next(r for r in before.rows if r.firm_id == "trifide")
    assert row.model_dump(exclude={"firm_name"}) == old.model_dump(exclude={"firm_name"})
    state = (await store.journey_states(played.programme_id, "trifide"))[stream_id]
    assert state.firm.contact_name is None and state.erased_on is not None

    # The key's wrapped form is gone; another process cannot decrypt anything either.
    row_key = await store.pool.fetchrow("SELECT * FROM data_keys WHERE key_id = $1", stream_id)
    assert row_key is not None and row_key["wrapped"] is None and row_key["destroyed_at"]
    other = Keyring(dsn, MasterKeys.parse(MASTER_KEY, "another process"))
    fresh = await Client.connect(
        played.server.address, data_converter=data_converter(other, "default")
    )
    codec = fresh.data_converter.payload_codec
    assert codec is not None
    try:
        for workflow_id, readable in (
            (stream_id, False),
            (journey_workflow_id(played.programme_id, "nordik"), True),  # others still read
        ):
            history = await fresh.get_workflow_handle(workflow_id).fetch_history()
            payloads = [p for e in history.events for p in _event_payloads(e)]
            encrypted = [p for p in payloads if p.metadata.get("encoding") == ENCODING]
            assert len(encrypted) > 3
            for payload in encrypted:
                if readable:
                    assert await codec.decode([payload])
                else:
                    with pytest.raises(PayloadErased):
                        await codec.decode([payload])
    finally:
        await other.aclose()
    raw = await played.client.get_workflow_handle(stream_id).describe()
    assert raw.status is not None and raw.status.name == "TERMINATED"

    # Again: nothing more to do, nothing breaks.
    again = await erasure.forget(
        played.client, store, played.programme_id, "trifide", reason="again", by="po"
    )
    assert not again.terminated and not again.key_destroyed
    assert again.tombstone_version == done.tombstone_version


# --------------------------------------------------------------------- rotation


async def test_after_a_key_rotation_everything_still_decodes(
    dsn: str, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    """In a database of its own: the CLI rotates its master key file, then retires it."""
    name = f"corridor_rot_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db_dsn = urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{name}"))
    key_file = tmp_path / "master.key"
    old = MasterKey.generate()
    write_key_file(key_file, [old])
    try:
        await migrate_database(db_dsn)
        keyring = Keyring(db_dsn, MasterKeys.parse(key_file.read_text(), "file", key_file))
        client = await Client.connect(
            temporal_server.address, data_converter=data_converter(keyring, "default")
        )
        async with EventStore.connect(db_dsn, keyring=keyring) as store:
            task_queue = f"rot-{uuid.uuid4()}"
            programme = make_programme(f"rot-{uuid.uuid4().hex[:8]}")
            firm = Firm(id="rota", name="Rota", contact_name="Rosalie Rota",
                        contact_email="rosalie@rota.example")
            async with build_worker(client, store, task_queue):
                await service.enroll(
                    client,
                    EnrollFirm(occurred_on=date(2013, 9, 17), programme=programme, firm=firm,
                               mission_id="m1"),
                    task_queue=task_queue,
                )
                await service.sync(client, programme.id, "rota")
        await keyring.aclose()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CORRIDOR_")},
            "CORRIDOR_DSN": db_dsn, "CORRIDOR_MASTER_KEY_FILE": str(key_file),
            "CORRIDOR_DATA_DIR": str(tmp_path / "data"),
        }
        code, out = await _corridor(env, "keys", "rotate")
        assert code == 0, out
        assert "2 data key(s) re-wrapped" in out or "1 data key(s) re-wrapped" in out, out
        assert f"master key {old.id}: decrypt-only, wraps 0 data key(s)" in out
        code, out = await _corridor(env, "keys", "retire")
        assert code == 0 and f"retired: {old.id}" in out, out
        assert old.encoded() not in key_file.read_text()
        assert (key_file.stat().st_mode & 0o777) == 0o600

        # A process with only the new key reads the history and the events.
        rotated = Keyring(db_dsn, MasterKeys.parse(key_file.read_text(), "file", key_file))
        client = await Client.connect(
            temporal_server.address, data_converter=data_converter(rotated, "default")
        )
        try:
            async with EventStore.connect(db_dsn, keyring=rotated) as store, build_worker(
                client, store, task_queue
            ):
                view = await service.view(client, programme.id, "rota")  # replays, decodes
                assert view.state.firm.contact_email == "rosalie@rota.example"
                stream = await store.read_stream(journey_workflow_id(programme.id, "rota"))
            enrolled: Any = stream[0].event
            assert enrolled.firm.contact_name == "Rosalie Rota"
        finally:
            await rotated.aclose()
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _corridor(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        CORRIDOR, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


# ------------------------------------------------------------ before encryption


async def test_a_journey_started_in_clear_replays_and_is_encrypted_from_then_on(
    plain_client: Client, client: Client, store: EventStore, programme_id: str
) -> None:
    programme = make_programme(programme_id)
    firm = Firm(id="ancienne", name="Ancienne", contact_name="Aline Ancienne",
                contact_email="aline@ancienne.example")
    task_queue = f"plain-{uuid.uuid4()}"
    async with build_worker(plain_client, store, task_queue):  # before encryption
        await service.enroll(
            plain_client,
            EnrollFirm(occurred_on=date(2013, 9, 17), programme=programme, firm=firm,
                       mission_id="m1"),
            task_queue=task_queue,
            # Its clock stands in 2013: one run, on one task queue, from plain to sealed.
            clock=ProgrammeClock.held_at(
                datetime(2013, 9, 18, 12, tzinfo=zone(programme.timezone))
            ),
        )
        await service.send(
            plain_client, programme_id, "ancienne",
            RequestMeeting(meeting_id="m-1", counterpart="Apple", occurred_on=date(2013, 9, 18)),
        )
    async with build_worker(client, store, task_queue):  # encryption switched on
        await service.send(
            client, programme_id, "ancienne",
            RequestMeeting(meeting_id="m-2", counterpart="Xerox", occurred_on=date(2013, 9, 18)),
        )
        view = await service.view(client, programme_id, "ancienne")
        assert sorted(view.state.meetings) == ["m-1", "m-2"]
        assert view.state.firm.contact_email == "aline@ancienne.example"
    workflow_id = journey_workflow_id(programme_id, "ancienne")
    history = await plain_client.get_workflow_handle(workflow_id).fetch_history()
    encodings = []
    for event in history.events:
        for payload in _event_payloads(event):
            encodings.append(payload.metadata.get("encoding"))
    first_encrypted = encodings.index(ENCODING)
    assert first_encrypted > 0 and b"json/plain" in encodings[:first_encrypted]
    assert all(e == ENCODING for e in encodings[first_encrypted:])
    # The whole history (plain, then encrypted) replays with the codec.
    encrypted = await client.get_workflow_handle(workflow_id).fetch_history()
    await Replayer(
        workflows=[FirmJourney], data_converter=client.data_converter
    ).replay_workflow(encrypted)


def _event_payloads(event: Any) -> Iterator[Any]:
    """Every payload of a history event, wherever it is nested (maps included)."""
    from temporalio.api.common.v1 import Payload

    stack = [event]
    while stack:
        message = stack.pop()
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                items = list(value.values())
            elif getattr(field, "is_repeated", False):
                items = list(value)
            else:
                items = [value]
            for item in items:
                if isinstance(item, Payload):
                    yield item
                elif hasattr(item, "ListFields"):
                    stack.append(item)


# ------------------------------------------------------------------ command line


async def test_corridor_forget_on_the_command_line(
    client: Client,
    worker: None,
    task_queue: str,
    temporal_server: TemporalDevServer,
    dsn: str,
    programme_id: str,
    tmp_path: Path,
) -> None:
    programme = make_programme(programme_id)
    firm = Firm(id="oubli", name="Oubli", contact_name="Odile Oubli",
                contact_email="odile@oubli.example")
    await service.enroll(
        client,
        EnrollFirm(occurred_on=date(2013, 9, 17), programme=programme, firm=firm, mission_id="m1"),
        task_queue=task_queue,
    )
    await service.sync(client, programme_id, "oubli")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CORRIDOR_", "TEMPORAL_"))},
        "TEMPORAL_ADDRESS": temporal_server.address, "CORRIDOR_DSN": dsn,
        "CORRIDOR_MASTER_KEY": MASTER_KEY, "CORRIDOR_TASK_QUEUE": task_queue,
        "CORRIDOR_DATA_DIR": str(tmp_path / "data"),
    }
    args = ("forget", "oubli", "--programme", programme_id, "--reason", "Law 25 request 7")
    code, out = await _corridor(env, *args)
    assert code == 0, out
    assert "journey ended, tombstone at version" in out and "data key destroyed." in out
    code, out = await _corridor(env, *args)
    assert code == 0 and "journey had ended" in out and "already destroyed" in out, out
    code, out = await _corridor(env, "timeline", "oubli", "--programme", programme_id)
    assert code == 0 and "personal data erased: Law 25 request 7" in out, out
    # This process had the key cached (for up to KEY_CACHE_SECONDS); a fresh reader:
    reader = Keyring(dsn, MasterKeys.parse(MASTER_KEY, "reader"))
    try:
        async with EventStore.connect(dsn, keyring=reader) as fresh:
            stream = await fresh.read_stream(journey_workflow_id(programme_id, "oubli"))
    finally:
        await reader.aclose()
    enrolled: Any = stream[0].event
    assert enrolled.firm.contact_email == ERASED
    code, out = await _corridor(env, "forget", "nobody", "--programme", programme_id,
                                "--reason", "x")
    assert code == 1 and "has no journey" in out, out


async def test_corridor_dev_serves_its_web_ui_through_a_codec_server(tmp_path: Path) -> None:
    """``corridor dev``: a master key file made once (0600), a codec server, the UI on it."""
    ui_port, codec_port = free_port(), free_port()
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CORRIDOR_", "TEMPORAL_"))},
        "CORRIDOR_DATA_DIR": str(data), "CORRIDOR_TEMPORAL_PORT": str(free_port()),
        "CORRIDOR_TEMPORAL_UI_PORT": str(ui_port), "CORRIDOR_CODEC_PORT": str(codec_port),
    }
    process = await asyncio.create_subprocess_exec(
        CORRIDOR, "dev", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        codec_file = data / "codec.json"
        for _ in range(600):
            if codec_file.exists() or process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert codec_file.exists(), await process.stderr.read() if process.stderr else ""
        codec = json.loads(codec_file.read_text())
        assert codec["url"] == f"http://127.0.0.1:{codec_port}"
        key_file = data / "master.key"
        assert (key_file.stat().st_mode & 0o777) == 0o600
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ui_port}/api/v1/settings") as settings:
                ui = await settings.json()
            assert ui["Codec"]["Endpoint"] == f"{codec['url']}/{codec['token']}", ui
            body = json.dumps({"payloads": []})
            bearer = {"Authorization": f"Bearer {codec['token']}"}
            async with http.post(f"{codec['url']}/decode", data=body, headers=bearer) as ok:
                assert ok.status == 200
            async with http.post(f"{codec['url']}/decode", data=body) as refused:
                assert refused.status == 401
    finally:
        if process.returncode is None:
            process.send_signal(2)
            await asyncio.wait_for(process.wait(), 60)
    assert not (data / "codec.json").exists()
    assert key_file.read_text() == key_file.read_text()
