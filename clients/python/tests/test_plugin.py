"""The pytest plugin, run on small test files with pytester against this run's daemon."""

import pytest

HEAD = "import pytest\n"


def run(pytester: pytest.Pytester, url: str, source: str, *args: str):
    pytester.makepyfile(HEAD + source)
    return pytester.runpytest_inprocess("-p", "iommud.pytest_plugin", f"--iommud-url={url}", "-p", "no:cacheprovider", *args)


def test_session_fixture_marker_and_cleanup(pytester, iommud_url):
    r = run(
        pytester,
        iommud_url,
        '''
ids = []

@pytest.mark.iommud(profile="tiny", tlb_entries=4)
def test_one(iommud_session):
    info = iommud_session.get()
    assert (info["profile"], info["tlbEntries"], info["name"]) == ("tiny", 4, "test_one")
    ids.append((iommud_session.id, iommud_session.token))

def test_default_profile(iommud_session, iommud_client):
    assert iommud_session.get()["profile"] == "msm8x60"
    assert iommud_client.url == iommud_session.url

def test_deleted_after(iommud_client):
    from iommud import Unauthorized
    sid, token = ids[0]
    with pytest.raises(Unauthorized):
        iommud_client.session(sid, token).get()
''',
    )
    r.assert_outcomes(passed=3)


def test_async_tests_run_in_an_event_loop(pytester, iommud_url):
    r = run(
        pytester,
        iommud_url,
        '''
@pytest.mark.iommud(profile="tiny")
async def test_stream(iommud_session):
    async with await iommud_session.stream("dev0") as st:
        items = await st.translate("read", [0x1000])
    assert (items[0]["status"], items[0]["tlb"], items[0]["paddr"]) == ("ok", "bypass", 0x1000)  # not attached
''',
    )
    r.assert_outcomes(passed=1)


def test_failure_report_carries_the_session_events(pytester, iommud_url):
    r = run(
        pytester,
        iommud_url,
        '''
@pytest.mark.iommud(profile="tiny")
def test_fails(iommud_session):
    d = iommud_session.alloc_domain(label="evidence")
    iommud_session.attach(d["id"], "dev0")
    iommud_session.access("dev0", iova=0x30000000, access="write")
    assert False, "the rig saw a fault"
''',
        "--iommud-events=2",
    )
    r.assert_outcomes(failed=1)
    out = r.stdout.str()
    assert "iommud events of session s-" in out and "(last 2)" in out
    # The last two events, as the daemon sent them.
    assert '"type":"domain","action":"alloc"' not in out
    assert '"type":"attach","domain":"dom-1","device":"dev0"' in out
    assert '"type":"fault"' in out and '"iova":"0x30000000"' in out and '"access":"write"' in out


def test_url_from_the_environment(pytester, iommud_url, monkeypatch):
    monkeypatch.setenv("IOMMUD_URL", iommud_url)
    pytester.makepyfile(HEAD + "def test_url(iommud_url):\n    assert iommud_url == %r\n" % iommud_url)
    pytester.runpytest_inprocess("-p", "iommud.pytest_plugin", "-p", "no:cacheprovider").assert_outcomes(passed=1)

