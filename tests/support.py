"""Running programs as a user would, for the CLI and bad-input tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, repr=False)
class Run:
    """What a user sees of one command: its exit code and its two outputs."""

    code: int
    out: str
    err: str

    @property
    def out_lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


async def run_program(
    program: str | Path,
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    seconds: float = 120,
) -> Run:
    """Run a program with no standard input; kill it after ``seconds``."""
    process = await asyncio.create_subprocess_exec(
        program,
        *(str(a) for a in args),
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())
