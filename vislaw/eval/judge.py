"""Whether a benchmark's external judge (GPT-scored MMBench) can score, before and while it runs.

A score made of failed judge calls must never look like a real one: lmms-eval's MMBench
evaluator retries every answer against the API and then fills the failures in with a guess. So
the judge is probed before the task runs (:func:`judge_unavailable`) and its failures are
counted while it runs (:func:`count_judge_failures`); vislaw.eval.task_loop writes a benchmark
that fails either as not scored, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator

from vislaw.eval.tasks import Judge


def judge_unavailable(judge: Judge, timeout: float = 5.0) -> str | None:
    """Why ``judge`` cannot score now (no key, endpoint unreachable), or None when it can.

    Checked before the task runs: lmms-eval's MMBench evaluator would otherwise retry every
    answer against the API and then fill the failures in with a guess, and the score made of
    failed calls would look like a real one.
    """
    try:
        key_env, url_env, default_url = judge.endpoint(os.environ)
    except ValueError as err:
        return f"{judge.name} judge: {err}"
    if not os.environ.get(key_env):
        return f"{judge.name} judge: {key_env} is not set"
    url = urllib.parse.urlsplit(os.environ.get(url_env) or default_url)
    if not url.hostname:
        return f"{judge.name} judge: {url_env}={url.geturl()!r} is not a URL"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        return f"{judge.name} judge: {url.hostname}:{port} unreachable ({err})"
    return None


# What lmms-eval's MMBench evaluator logs when the judge gave no answer for an item after all
# its retries (it then guesses a letter at random and carries on).
JUDGE_FAILURE_MESSAGE = "GPT API failed to answer"


@contextlib.contextmanager
def count_judge_failures() -> Iterator[list[str]]:
    """Collect lmms-eval's judge-failure log messages while the block runs (loguru sink)."""
    from loguru import logger

    failures: list[str] = []
    sink = logger.add(
        lambda message: failures.append(str(message)),
        level="INFO",
        filter=lambda record: JUDGE_FAILURE_MESSAGE in record["message"],
    )
    try:
        yield failures
    finally:
        logger.remove(sink)
