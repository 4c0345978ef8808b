"""Large JSON bodies are judged in a process of their own, so they never hold the service's interpreter.

Checking an 8 MB batch (serving/strict_json.py) is pure Python for ~15 ms. In a thread of the
service's process it takes the interpreter lock in 1 ms turns from the event loop and the scoring
thread, and every claim scored meanwhile waits for its turns: with one client sending maximal bad
batches back to back, /score's p99 was 3x its idle value; with the check in this process, under 2x
(benchmarks/bench_hostile.py, README "Security").

The checker is a small child process (`python -m serving.body_checker`, importing only
serving/strict_json.py) that reads framed bodies on its standard input and writes its verdicts on
its standard output, one at a time. It starts with the first large body; if it dies or hangs, it is
stopped and the body is judged in a thread instead (same verdict, only slower for the others), and
the next large body starts a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import anyio.to_thread

from serving.strict_json import ClaimLimits, Refused, check_batch, check_claim

log = logging.getLogger(__name__)
_ASK = struct.Struct(">cI")  # b"c" (one claim) or b"b" (a batch), then the body's length
_VERDICT = struct.Struct(">HI")  # 0 (accepted) or the HTTP status, then the message's length
_CHECKS = {b"c": check_claim, b"b": check_batch}
# A verdict on the largest body takes ~15 ms; a checker silent this long is taken for hung.
VERDICT_SECONDS = 30.0
_ROOT = Path(__file__).resolve().parent.parent  # where `serving` is found, whatever the service's directory


class BodyChecker:
    """Judges bodies in the child process: `await judge(b"b", body)` raises Refused as
    check_batch(body, limits) would, and returns None when the body passes. The pipes are written
    and read by a worker thread, whose blocking calls let go of the interpreter: written from the
    event loop, an 8 MB body took ~130 of its turns."""

    def __init__(self, limits: ClaimLimits, verdict_seconds: float = VERDICT_SECONDS):
        self.limits = limits
        self.verdict_seconds = verdict_seconds
        self.command = [sys.executable, "-m", "serving.body_checker", json.dumps(asdict(limits))]
        self._child: subprocess.Popen | None = None
        self._turn = threading.Lock()  # one body at a time through the child's pipes

    async def judge(self, kind: bytes, body: bytes) -> None:
        asked = asyncio.get_running_loop().run_in_executor(None, self._ask, kind, body)
        try:
            verdict = await asyncio.wait_for(asked, self.verdict_seconds)
        except (OSError, EOFError, ValueError, asyncio.TimeoutError) as failure:
            log.warning("the body checker failed (%s: %s); this body is checked in a thread and the next "
                        "starts a new checker", type(failure).__name__, failure)
            self._stop()
            verdict = None
            await anyio.to_thread.run_sync(_CHECKS[kind], body, self.limits)
        if verdict is not None:
            raise Refused(*verdict)

    def _ask(self, kind: bytes, body: bytes) -> tuple[int, str] | None:
        with self._turn:
            child = self._running()
            child.stdin.write(_ASK.pack(kind, len(body)))
            child.stdin.write(body)
            child.stdin.flush()
            status, length = _VERDICT.unpack(_read_exactly(child.stdout, _VERDICT.size))
            message = _read_exactly(child.stdout, length).decode()
        return (status, message) if status else None

    def _running(self) -> subprocess.Popen:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ROOT)
        return self._child

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()

    @property
    def pid(self) -> int | None:
        """The checker's process id while one runs (for tests and operators)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise EOFError(f"the body checker stopped after {len(data)} of {n} bytes")
    return data


def serve(limits: ClaimLimits, asks, answers) -> None:
    """The child's loop: a verdict for each body asked, until its input closes."""
    while True:
        head = asks.read(_ASK.size)
        if len(head) < _ASK.size:
            return
        kind, length = _ASK.unpack(head)
        body = asks.read(length)
        try:
            _CHECKS[kind](body, limits)
            status, message = 0, b""
        except Refused as refused:
            status, message = refused.status, str(refused).encode()
        answers.write(_VERDICT.pack(status, len(message)) + message)
        answers.flush()


if __name__ == "__main__":
    serve(ClaimLimits(**json.loads(sys.argv[1])), sys.stdin.buffer, sys.stdout.buffer)
