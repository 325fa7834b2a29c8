"""The ``corridor`` command line: commands only, one module per group.

- ``servers``: dev, setup, migrate, rebuild;
- ``files``: enroll (a roster), record (a journal);
- ``staff``: one fact at a time (meeting request/arrange/result, contract, visit,
  evaluate, withdraw, next-step done, reassign) and its corrections (correct
  contract/meeting/visit, void contract);
- ``reading``: status, report, timeline;
- ``demo``: the seed's mission;
- ``mail``: the messages the embedded SMTP server kept.
- ``privacy``: forget (erasure), keys status/rotate/retire/generate, codec-server.

What they share is in ``app`` (consoles, exit codes, options) and ``connections``
(finding Temporal and the event store). Exit codes: 0 on success; 1 when a journey
refused a record or nothing was found; 2 for bad input (nothing was sent); 3 when a
server cannot be reached.
"""

from __future__ import annotations

import os
import sys

import typer

from corridor.cli import demo, files, mail, privacy, reading, servers, staff
from corridor.cli.app import err, print_error
from corridor.settings import SettingsError

app = typer.Typer(
    help="Corridor: durable follow-up of economic trade missions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
meeting_app = typer.Typer(help="Record a meeting: request, arrange, result.", no_args_is_help=True)
app.add_typer(meeting_app, name="meeting")
correct_app = typer.Typer(
    help="Correct a record, with a reason: contract, meeting, visit.", no_args_is_help=True
)
app.add_typer(correct_app, name="correct")
void_app = typer.Typer(help="Void a record made by mistake, with a reason.", no_args_is_help=True)
app.add_typer(void_app, name="void")
next_step_app = typer.Typer(help="A meeting result's next step.", no_args_is_help=True)
app.add_typer(next_step_app, name="next-step")
keys_app = typer.Typer(help="Master and data keys: status, rotate, retire.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

app.command()(servers.dev)
app.command()(files.enroll)
app.command()(files.record)
meeting_app.command("request")(staff.meeting_request)
meeting_app.command("arrange")(staff.meeting_arrange)
meeting_app.command("result")(staff.meeting_result)
app.command()(staff.contract)
app.command()(staff.visit)
app.command()(staff.evaluate)
app.command()(staff.withdraw)
correct_app.command("contract")(staff.correct_contract)
correct_app.command("meeting")(staff.correct_meeting)
correct_app.command("visit")(staff.correct_visit)
void_app.command("contract")(staff.void_contract)
app.command()(reading.status)
app.command()(reading.timeline)
app.command()(servers.setup)
app.command()(reading.report)
app.command()(servers.rebuild)
app.command()(servers.migrate)
app.command()(demo.demo)
next_step_app.command("done")(staff.next_step_done)
app.command()(staff.reassign)
app.command("mail")(mail.mail)
app.command()(privacy.forget)
app.command("codec-server")(privacy.codec_server)
keys_app.command("status")(privacy.keys_status)
keys_app.command("rotate")(privacy.keys_rotate)
keys_app.command("retire")(privacy.keys_retire)
keys_app.command("generate")(privacy.keys_generate)


def main() -> None:
    """Entry point of the ``corridor`` console script.

    Exits with ``os._exit`` once output is flushed: the Temporal SDK's native runtime can
    abort the interpreter at exit (sdk-python issue 300, exit 134), which must not turn
    a successful command into a failure.
    """
    code = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except SettingsError as error:
        print_error(f"environment: {error}")
        code = 2
    except KeyboardInterrupt:
        err.print("aborted")
        code = 130
    except Exception as error:
        print_error(f"{type(error).__name__}: {error}")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
