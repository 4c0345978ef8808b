"""Large bodies are judged in a process of their own (serving/body_checker.py): the same verdicts as
the checks run in the service's process, a checker that dies or hangs replaced, and, over HTTP, the
large body really judged outside the worker."""

import asyncio
import json
import os
import signal
import sys

import httpx
import psutil
import pytest

from serving.body_checker import BodyChecker
from serving.strict_json import ClaimLimits, Refused, check_batch, check_claim

LIMITS = ClaimLimits(max_fields_per_claim=50, max_claims=100, max_claim_chars=262_144)
CLAIM = {"claim_id": "B-1", "claim_amount": 1200.5, "region": "north", "loss_type": "theft"}


def _batch(n: int, **extra) -> bytes:
    return json.dumps({"claims": [dict(CLAIM, claim_id=f"B-{i}") for i in range(n)], **extra}).encode()


BODIES = [
    (b"b", _batch(80, explain=True)),
    (b"b", _batch(80).replace(b'"claim_id": "B-79"', b'"claim_id": "B-79", "claim_id": "x"')),
    (b"b", _batch(101)),
    (b"b", b'{"claims": [' + b", ".join([json.dumps({f"f{i}": 0 for i in range(60)}).encode()] * 3) + b"]}"),
    (b"b", _batch(5)[:-9]),  # cut short
    (b"b", _batch(5, explain="yes")),
    (b"c", json.dumps(CLAIM).encode()),
    (b"c", json.dumps({f"f{i}": 0 for i in range(51)}).encode()),
    (b"c", b'{"claim_id": "a", "claim_amount": NaN}'),
    (b"c", b'\xff\xfe'),
]


def _in_process(kind: bytes, body: bytes) -> tuple[int, str] | None:
    try:
        (check_claim if kind == b"c" else check_batch)(body, LIMITS)
    except Refused as refused:
        return refused.status, str(refused)
    return None


async def _judged(checker: BodyChecker, kind: bytes, body: bytes) -> tuple[int, str] | None:
    try:
        await checker.judge(kind, body)
    except Refused as refused:
        return refused.status, str(refused)
    return None


def test_the_checker_process_gives_the_verdicts_the_service_s_process_would():
    async def run():
        checker = BodyChecker(LIMITS)
        found = [await _judged(checker, kind, body) for kind, body in BODIES]
        assert checker.pid is not None and checker.pid != os.getpid()
        checker._stop()
        return found

    found = asyncio.run(run())
    expected = [_in_process(kind, body) for kind, body in BODIES]
    assert found == expected
    assert expected[0] is None and expected[6] is None  # both kinds of good body pass
    assert {verdict[0] for verdict in expected if verdict} == {400, 413, 422}  # and each refusal is exercised


def test_a_checker_that_died_is_replaced_and_the_body_still_judged():
    async def run():
        checker = BodyChecker(LIMITS)
        assert await _judged(checker, *BODIES[0]) is None
        first = checker.pid
        os.kill(first, signal.SIGKILL)
        psutil.Process(first).wait(timeout=10)
        verdict = await _judged(checker, *BODIES[1])  # the dead pipe is found, the body judged anyway
        again = await _judged(checker, *BODIES[1])
        second = checker.pid
        checker._stop()
        return first, second, verdict, again

    first, second, verdict, again = asyncio.run(run())
    assert verdict == again == _in_process(*BODIES[1]) and verdict[0] == 400
    assert second is not None and second != first


def test_a_checker_that_dies_while_judging_is_replaced_and_the_body_still_judged(caplog):
    async def run():
        checker = BodyChecker(LIMITS)
        real = checker.command
        checker.command = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(5)"]  # gone mid-body
        verdict = await _judged(checker, *BODIES[1])
        checker.command = real
        again = await _judged(checker, *BODIES[1])
        assert "serving.body_checker" in " ".join(psutil.Process(checker.pid).cmdline())
        checker._stop()
        return verdict, again

    verdict, again = asyncio.run(run())
    assert verdict == again == _in_process(*BODIES[1]) and verdict[0] == 400
    assert "the body checker failed" in caplog.text


def test_a_hung_checker_is_stopped_and_the_body_judged_in_a_thread(caplog):
    async def run():
        checker = BodyChecker(LIMITS, verdict_seconds=1.0)
        assert await _judged(checker, *BODIES[0]) is None
        hung = psutil.Process(checker.pid)
        hung.suspend()
        verdict = await _judged(checker, *BODIES[2])
        gone = not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
        after = await _judged(checker, *BODIES[7])
        checker._stop()
        return verdict, gone, after

    verdict, gone, after = asyncio.run(run())
    assert verdict == _in_process(*BODIES[2]) and verdict[0] == 413
    assert gone  # killed, not left stopped
    assert after == _in_process(*BODIES[7]) and after[0] == 422  # a new checker answers the next
    assert "the body checker failed (TimeoutError" in caplog.text


def test_a_large_body_is_judged_outside_the_service_s_worker(service):
    body = _batch(900).replace(b'"claim_id": "B-899"', b'"claim_id": "B-899", "claim_id": "y"')
    assert len(body) > 64 * 1024
    reply = httpx.post(service["base"] + "/score_batch", content=body, timeout=60,
                       headers={**service["auth"], "content-type": "application/json"})
    assert reply.status_code == 400 and reply.json() == {"error": "duplicate key 'claim_id' in claim 900 (claims[899])"}
    workers = [p for p in psutil.Process(service["server"].pid).children(recursive=True)
               if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert len(workers) == 1
    checkers = [p for p in workers[0].children() if "serving.body_checker" in p.cmdline()]
    assert len(checkers) == 1 and checkers[0].is_running()


@pytest.fixture(autouse=True)
def _no_checker_left_behind():
    """Each test stops its own checkers; a child left running would outlive the test run."""
    before = {p.pid for p in psutil.Process().children()}
    yield
    left = [p for p in psutil.Process().children()
            if p.pid not in before and "serving.body_checker" in " ".join(p.cmdline())]
    assert left == []
