"""Group commit for single claims: those that arrive while others are being scored wait, then go
together, in one transaction of the claim store.

A claim that finds the scorer idle is scored at once, alone: grouping never adds waiting. Under
load, every claim that arrived during one scoring round goes in the next (up to `max_group`), so
a round's fixed costs (the commit's flush to disk, the per-call overheads of the models and the
explanations) are shared, and the group grows with the load. Each caller gets its own answer,
the one `Scorer.score_each` gives it; nothing is answered before its group is committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import sqlalchemy as sa


class ClaimGroups:
    """Scores single claims in groups, on one thread of its own, from the service's event loop."""

    def __init__(self, score_each: Callable[[list[dict]], list[dict]], max_group: int,
                 on_group: Callable[[int], None] | None = None):
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, not {max_group}")
        self._score_each = score_each
        self.max_group = max_group
        self._on_group = on_group  # told each group's size (the service's metric)
        self._waiting: list[tuple[dict, asyncio.Future]] = []
        self._rounds: asyncio.Task | None = None
        # One thread: the groups are scored one after another, as the claim store commits them.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="claim-groups")

    @property
    def waiting(self) -> int:
        """Claims waiting for the group being scored to finish."""
        return len(self._waiting)

    async def score(self, record: dict) -> dict:
        """The claim's answer (a decision or its errors), once its group is committed."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._waiting.append((record, answer))
        if self._rounds is None:
            self._rounds = loop.create_task(self._run())
        return await answer

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[tuple[dict, asyncio.Future]] = []
        try:
            while self._waiting:
                # A caller that went away before its group started is not scored: nothing was acknowledged.
                waiting = [(record, answer) for record, answer in self._waiting if not answer.done()]
                group, self._waiting = waiting[:self.max_group], waiting[self.max_group:]
                if not group:
                    continue
                if self._on_group is not None:
                    self._on_group(len(group))
                try:
                    results = await loop.run_in_executor(self._thread, self._score_each, [r for r, _ in group])
                except Exception as error:
                    # The database itself failing would fail every claim alike: told at once.
                    if len(group) == 1 or isinstance(error, sa.exc.OperationalError):
                        _fail(group, error)
                        continue
                    # Its transaction was undone: each claim again alone, so that a claim the scorer
                    # cannot handle fails only its own caller. (A group with a claim_id sent twice is two
                    # transactions; should the second fail, the first's claims get a second decision.)
                    results = [await self._alone(loop, record, answer) for record, answer in group]
                for (_, answer), result in zip(group, results, strict=True):
                    if not answer.done():  # its caller may have gone; the claim is kept all the same
                        answer.set_result(result)
        except BaseException as error:  # the service stopping (or a bug): no caller is left hanging
            _fail(group + self._waiting, error)
            self._waiting = []
            raise
        finally:
            self._rounds = None

    async def _alone(self, loop: asyncio.AbstractEventLoop, record: dict, answer: asyncio.Future) -> dict | None:
        try:
            return (await loop.run_in_executor(self._thread, self._score_each, [record]))[0]
        except Exception as error:
            _fail([(record, answer)], error)
            return None


def _fail(callers: list[tuple[dict, asyncio.Future]], error: BaseException) -> None:
    for _, answer in callers:
        if answer.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            answer.cancel()
        else:
            answer.set_exception(error)
