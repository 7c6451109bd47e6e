"""pytest plugin (entry point ``pytest11``; without installing: ``-p iommud.pytest_plugin``).

Fixtures:
- ``iommud_url`` (session scope): ``--iommud-url`` / ``IOMMUD_URL``, else a daemon started from the checkout on a
  free loopback port for the whole run and stopped after it (see ``iommud.daemon``).
- ``iommud_client`` (session scope): a ``Client`` for that URL.
- ``iommud_session`` (per test): a fresh session, deleted after the test; ``@pytest.mark.iommud(profile="tiny",
  tlb_entries=4, ...)`` gives its ``create_session`` arguments.
- ``iommud_daemon_factory``: ``IommudDaemon`` instances of the test's own (restarts, ``--data-dir``), stopped after.

When a test that uses ``iommud_session`` fails, the session's recent events are attached to its report. ``async
def`` tests that use these fixtures run in a fresh event loop (``asyncio.run``) unless another plugin
(pytest-asyncio, anyio) claims them by its marker.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any, Callable, Dict, Generator, Iterator, List

import pytest

from .client import Client, Session
from .daemon import IommudDaemon
from .errors import IommudError
from .events import recent_events

_FIXTURES = {"iommud_url", "iommud_client", "iommud_session", "iommud_daemon_factory"}
_EVENTS_KEY = pytest.StashKey[Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("iommud")
    g.addoption("--iommud-url", default=None, help="an iommud daemon to test against (default: IOMMUD_URL, else one started for the run)")
    g.addoption("--iommud-events", type=int, default=50, help="how many of a failed test's session events to show (default 50; 0: none)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "iommud(**session): arguments of create_session for the iommud_session fixture, e.g. profile='tiny'")


@pytest.fixture(scope="session")
def iommud_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.config.getoption("--iommud-url") or os.environ.get("IOMMUD_URL")
    if url:
        yield url.rstrip("/")
        return
    daemon = IommudDaemon()
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def iommud_client(iommud_url: str) -> Client:
    return Client(iommud_url)


@pytest.fixture
def iommud_session(request: pytest.FixtureRequest, iommud_client: Client) -> Iterator[Session]:
    kwargs: Dict[str, Any] = {"name": request.node.name[:128]}
    for mark in reversed(list(request.node.iter_markers("iommud"))):
        kwargs.update(mark.kwargs)
    s = iommud_client.create_session(**kwargs)
    request.node.stash[_EVENTS_KEY] = s
    try:
        yield s
    finally:
        try:
            s.delete()
        except IommudError:
            pass  # the test deleted it itself, or the daemon it talked to is gone


@pytest.fixture
def iommud_daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., IommudDaemon]]:
    """``d = iommud_daemon_factory(data_dir=tmp_path); d.start(); d.restart()``: stopped after the test."""
    made: List[IommudDaemon] = []

    def make(**kwargs: Any) -> IommudDaemon:
        kwargs.setdefault("log_path", tmp_path_factory.mktemp("iommud-log") / "iommud.log")
        d = IommudDaemon(**kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def _wants_us(item: pytest.Function) -> bool:
    return bool(_FIXTURES & set(item.fixturenames)) or item.get_closest_marker("iommud") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if not inspect.iscoroutinefunction(pyfuncitem.obj) or not _wants_us(pyfuncitem):
        return None
    if any(pyfuncitem.get_closest_marker(m) for m in ("asyncio", "anyio", "trio")):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    session = item.stash.get(_EVENTS_KEY, None)
    limit = int(item.config.getoption("--iommud-events"))
    if session is None or limit <= 0:
        return
    try:
        lines = recent_events(session, limit)
        text = "\n".join(lines) if lines else "(no events)"
    except Exception as e:  # the report must not fail because the daemon went away
        text = f"(could not fetch events: {e!r})"
    report.sections.append((f"iommud events of session {session.id} (last {limit})", text))
