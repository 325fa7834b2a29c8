"""The codec server: lets auditors read encrypted journeys in the Temporal Web UI and CLI.

``POST /decode`` and ``POST /encode`` take and return ``{"payloads": [...]}`` (protobuf
JSON of ``Payloads``), as the Temporal Web UI (``--ui-codec-endpoint``) and the
Temporal CLI (``--codec-endpoint``, ``--codec-auth``) call them. Every request needs a
token: ``Authorization: Bearer <token>`` (the CLI, a proxy in front of the UI), or the
token as the first segment of the path (``/<token>/decode``: the endpoint given to a
Web UI that cannot add a header, such as the dev server's). A missing or wrong token is
refused (401 / 403). CORS lets only the Web UI's origin call it from a browser.

Every decode is logged: who (the token's name), which namespace and workflows (the
journeys whose keys the payloads name), how many payloads, and when (the line's time);
never the data. Payloads whose key was destroyed stay encrypted (the firm was erased).
The server listens on loopback by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from activities.keys import Keyring, journey_key_id
from corridor.codec import EncryptionCodec, PayloadErased, key_id_of

log = structlog.get_logger("corridor.codec_server")

_ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_tokens(text: str) -> dict[str, str]:
    """``name=token`` pairs separated by commas (``CORRIDOR_CODEC_TOKENS``), by token.

    Raises:
        ValueError: A pair without a name or a token, or a token shorter than 16.
    """
    tokens: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, _, token = pair.partition("=")
        if not name.strip() or len(token.strip()) < 16:
            raise ValueError("expected name=token pairs, tokens of 16 characters or more")
        tokens[token.strip()] = name.strip()
    return tokens


def _who(tokens: Mapping[str, str], given: str) -> str | None:
    """The name of the token given, comparing in constant time."""
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            found = name
    return found


def codec_app(
    keyring: Keyring, tokens: Mapping[str, str], ui_origin: str | None, namespace: str = "default"
) -> web.Application:
    """The codec server's application.

    Args:
        keyring: The data keys.
        tokens: The accepted tokens, each with the name logged for its decodes.
        ui_origin: The Web UI's origin (``http://127.0.0.1:8233``), the only one allowed
            by CORS; None: no browser may call it.
        namespace: The namespace assumed when a request names none (``X-Namespace``).
    """
    codec = EncryptionCodec(keyring, namespace)

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin == ui_origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
            response.headers["Vary"] = "Origin"
        return response

    def authorised(request: web.Request) -> str | web.Response:
        path_token = request.match_info.get("token")
        header = request.headers.get("Authorization", "")
        given = path_token or (header[7:].strip() if header.lower().startswith("bearer ") else "")
        if not given:
            log.warning("codec.refused", reason="no token", path=request.path.split("/")[-1])
            return web.json_response({"error": "a bearer token is required"}, status=401)
        who = _who(tokens, given)
        if who is None:
            log.warning("codec.refused", reason="unknown token", path=request.path.split("/")[-1])
            return web.json_response({"error": "unknown token"}, status=403)
        return who

    async def payloads_of(request: web.Request) -> Payloads | web.Response:
        try:
            return json_format.Parse(await request.text(), Payloads())
        except json_format.ParseError:
            return web.json_response({"error": "expected {\"payloads\": [...]}"}, status=400)

    def reply(payloads: list[Payload]) -> web.Response:
        body = json_format.MessageToJson(Payloads(payloads=payloads))
        return web.Response(text=body, content_type="application/json")

    async def asked(request: web.Request) -> tuple[str, Payloads] | web.StreamResponse:
        """Who asks and the payloads sent; or the refusal to answer (CORS headers set)."""
        who = authorised(request)
        if isinstance(who, web.Response):
            return cors(request, who)
        given = await payloads_of(request)
        if isinstance(given, web.Response):
            return cors(request, given)
        return who, given

    async def decode(request: web.Request) -> web.StreamResponse:
        question = await asked(request)
        if isinstance(question, web.StreamResponse):
            return question
        who, given = question
        decoded: list[Payload] = []
        workflows: set[str] = set()
        erased = 0
        for payload in given.payloads:
            key_id = key_id_of(payload)
            if key_id is not None:
                workflows.add(key_id)
            try:
                decoded.append(await codec.decode_one(payload))
            except PayloadErased:
                erased += 1
                decoded.append(payload)
        log.info(
            "codec.decoded",
            who=who,
            namespace=request.headers.get("X-Namespace", namespace),
            workflows=sorted(workflows),
            payloads=len(given.payloads),
            erased=erased,
        )
        return cors(request, reply(decoded))

    async def encode(request: web.Request) -> web.StreamResponse:
        question = await asked(request)
        if isinstance(question, web.StreamResponse):
            return question
        who, given = question
        space = request.headers.get("X-Namespace", namespace)
        scoped = EncryptionCodec(keyring, space)
        encoded = await scoped.encode(list(given.payloads))
        log.info(
            "codec.encoded",
            who=who,
            namespace=space,
            key=journey_key_id(None, space),
            payloads=len(given.payloads),
        )
        return cors(request, reply(encoded))

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response(status=204))

    app = web.Application()
    for prefix in ("", "/{token}"):
        app.router.add_post(f"{prefix}/decode", decode)
        app.router.add_post(f"{prefix}/encode", encode)
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
    return app


class CodecServer:
    """The codec server on ``host:port`` while the context is open.

    Args:
        app: The application (:func:`codec_app`).
        host: Where to listen (loopback unless told otherwise).
        port: The port.
    """

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> CodecServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("codec.started", url=self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
