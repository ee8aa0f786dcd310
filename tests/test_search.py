"""The search language: parsing (errors name the wrong token, never a crash on any input),
plain-English mentions, and every filter run against both databases."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hsettings, strategies as st

from intake import inquiries, search
from intake.cli import main
from intake.grouping import store
from intake.models import Attachment, Message
from intake.search import Query, QueryError, parse
from intake.jobs import InlineQueue
from tests.fakeslack import make_inquiry

CATEGORIES = ["application", "press", "partnership", "general", "spam"]
NOW = dt.datetime(2026, 12, 2, 15, 30, tzinfo=dt.timezone.utc)  # a Wednesday


def p(text, **kw):
    return parse(text, categories=CATEGORIES, now=NOW, **kw)


# ---- parsing ----------------------------------------------------------------------------------


def test_the_example_from_the_issue_parses():
    q = p('category:press status:open,waiting from:@city.gov assignee:@me since:7d before:2026-12-01 '
          'lang:es has:attachment "exact phrase" words', user="U100")
    assert q.categories == ("press",) and q.statuses == ("open", "waiting")
    assert q.senders == ("@city.gov",) and q.assignees == ("U100",)
    assert q.since == NOW - dt.timedelta(days=7)
    assert q.before == dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    assert q.languages == ("es",) and q.has == ("attachment",)
    assert q.phrases == ("exact phrase",) and q.words == ("words",)
    assert not q.overdue and p("overdue").overdue


@pytest.mark.parametrize("text, token, says", [
    ("category:pres", "category:pres", "unknown category 'pres'"),
    ("stauts:open", "stauts:open", "unknown filter stauts:"),
    ("status:open,wating", "status:open,wating", "unknown status 'wating'"),
    ("since:7y", "since:7y", "2026-12-01"),
    ("before:2026-13-01", "before:2026-13-01", "give a date"),
    ('visa "unclosed phrase', '"unclosed phrase', "never closed"),
    ("from:", "from:", "needs a value"),
    ("assignee:@me", "assignee:@me", "@me means the Slack user"),
    ("assignee:bob", "assignee:bob", "Slack user ID"),
    ("lang:spanish", "lang:spanish", "two-letter"),
    ("has:photos", "has:photos", "attachment"),
    ("group:abc", "group:abc", "group number"),
    ("since:today since:7d", "since:7d", "given twice"),
    ("since:today before:yesterday", "before:", "not after"),
])
def test_errors_name_the_wrong_token(text, token, says):
    with pytest.raises(QueryError) as caught:
        p(text)
    assert caught.value.token == token
    assert says in str(caught.value) and repr(token) in str(caught.value)


def test_assignee_forms_and_dates():
    assert p("assignee:<@U123|ann>,none,any,W456").assignees == ("U123", "@none", "@any", "W456")
    assert p("since:today").since == dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)
    assert p("since:12h").since == NOW - dt.timedelta(hours=12)
    assert p("since:2w").since == NOW - dt.timedelta(weeks=2)
    assert p('from:"ann@x.org"').senders == ("ann@x.org",)


def test_plain_english_mentions():
    q = p("<@UBOT> open press inquiries this week", natural=True, user="U100")
    assert q.statuses == ("new", "open", "waiting") and q.categories == ("press",)
    assert q.since == dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)  # Monday
    assert q.words == ()
    q = p("show me my partnerships from city.gov in spanish today", natural=True, user="U100")
    assert q.assignees == ("U100",) and q.categories == ("partnership",) and q.senders == ("city.gov",)
    assert q.languages == ("es",) and q.since == dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)
    assert p("unassigned visa questions", natural=True).assignees == ("@none",)
    assert p("unassigned visa questions", natural=True).words == ("visa", "questions")
    # The grammar itself still works inside a mention; plain words stay words outside one.
    assert p("<@UBOT> category:press since:7d", natural=True).categories == ("press",)
    assert p("open press").words == ("open", "press")


@hsettings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_the_parser_never_crashes(text):
    for natural in (False, True):
        try:
            query = parse(text, categories=CATEGORIES, user="U1", natural=natural, now=NOW)
        except QueryError as exc:
            assert str(exc)
        else:
            assert isinstance(query, Query)
            search.compile_query(query, now=NOW)


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["category:", "status:", "from:", "since:", "before:", "has:", "lang:",
                                 "group:", "assignee:", '"', ",", "@", "overdue", "7d", "press", "open",
                                 "2026-01-01", "x", " ", "<@U1>", ":"]), max_size=12))
def test_the_parser_never_crashes_on_near_grammar(parts):
    text = "".join(parts)
    try:
        query = parse(text, categories=CATEGORIES, natural=False, now=NOW)
    except QueryError as exc:
        assert exc.token is not None
    else:
        assert isinstance(query, Query)


# ---- on both databases ------------------------------------------------------------------------


def _attach(rt, inquiry_id):
    with rt.db.session() as session:
        message = session.query(Message).filter_by(inquiry_id=inquiry_id).first()
        session.add(Attachment(message_id=message.id, filename="cv.pdf", content_type="application/pdf",
                               size=3, sha256=hashlib.sha256(b"pdf").hexdigest(), content=b"pdf"))


@pytest.fixture
def desk(rt):
    now = dt.datetime.now(dt.timezone.utc)
    ids = {
        "press": make_inquiry(rt, subject="Interview request", body="A story about fellows", sender="rita@news.example",
                              category="press", received_at=now - dt.timedelta(days=2)),
        "city": make_inquiry(rt, subject="Hosting fellows", body="Our city wants to host", sender="cto@city.gov",
                             category="partnership", received_at=now - dt.timedelta(days=20)),
        "sub": make_inquiry(rt, subject="Data team", body="County data question", sender="ann@data.city.gov",
                            category="partnership", received_at=now - dt.timedelta(hours=3)),
        "visa": make_inquiry(rt, subject="Visa question", body="Do you sponsor visas? Exact phrase here.",
                             sender="lu@example.org", received_at=now - dt.timedelta(days=1)),
        "old": make_inquiry(rt, subject="Old closed one", body="visa", sender="old@example.org", status="closed",
                            received_at=now - dt.timedelta(days=90)),
    }
    with rt.db.session() as session:
        inquiries.claim(session, ids["press"], "U100")
        inquiries.get_inquiry(session, ids["visa"]).language = "es"
        inquiries.add_note(session, ids["city"], "called them", "U200")
    _attach(rt, ids["visa"])
    return ids


def run(rt, text, **kw):
    with rt.db.session() as session:
        return [i.id for i in search.search(session, parse(text, categories=CATEGORIES, **kw))]


def test_every_filter_on_both_databases(rt, desk):
    d = desk
    assert run(rt, "category:press") == [d["press"]]
    assert set(run(rt, "category:press,partnership")) == {d["press"], d["city"], d["sub"]}
    assert d["old"] not in run(rt, "status:new,open,waiting")
    assert run(rt, "status:closed") == [d["old"]]
    assert set(run(rt, "from:@city.gov")) == {d["city"], d["sub"]}  # subdomains too
    assert run(rt, "from:cto@city.gov") == [d["city"]]
    assert run(rt, "from:rita") == [d["press"]]
    assert run(rt, "assignee:@me", user="U100") == [d["press"]]
    assert d["press"] not in run(rt, "assignee:none")
    assert run(rt, "assignee:any") == [d["press"]]
    assert set(run(rt, "since:7d")) == {d["press"], d["sub"], d["visa"]}
    assert run(rt, "since:30d before:7d") == [d["city"]]
    assert run(rt, "lang:es") == [d["visa"]]
    assert run(rt, "has:attachment") == [d["visa"]]
    assert run(rt, "has:note") == [d["city"]]
    assert run(rt, '"exact phrase"') == [d["visa"]]
    assert run(rt, "VISA status:new") == [d["visa"]]  # words: case-insensitive, any message
    assert run(rt, "100%_") == []  # LIKE wildcards are escaped
    assert run(rt, "from:@city.gov since:1d category:partnership county") == [d["sub"]]
    # Newest first, like intake list.
    assert run(rt, "status:new,open") == [d["sub"], d["visa"], d["press"], d["city"]]

def test_overdue_follows_the_response_clock(rt, desk):
    """A response owed and its target passed; a future target, a closed inquiry or one waiting on
    the applicant is not overdue (the rule of intake.sla.clock)."""
    now = dt.datetime.now(dt.timezone.utc)
    with rt.db.session() as session:
        for key, due in (("visa", -1), ("press", 24), ("old", -48), ("sub", -2)):
            inquiries.get_inquiry(session, desk[key]).response_due = now + dt.timedelta(hours=due)
        inquiries.get_inquiry(session, desk["sub"]).status = "waiting"
    assert run(rt, "overdue") == [desk["visa"]]
    assert run(rt, "overdue category:press") == []
    assert run(rt, "<@UBOT> overdue applications", natural=True) == [desk["visa"]]


def test_group_filter(rt):
    ids = [make_inquiry(rt, subject="Deadline?", body="When is the application deadline? The closing date?",
                        sender=f"d{i}@example.org") for i in range(3)]
    store.refresh(rt)
    with rt.db.session() as session:
        [group] = store.groups(session)
    assert sorted(run(rt, f"group:{group.id}")) == sorted(ids)


def test_search_inquiries_keeps_working(rt, desk):
    with rt.db.session() as session:
        assert [i.id for i in inquiries.search_inquiries(session, "interview STORY")] == [desk["press"]]


def test_intake_list_query(db_url):
    from intake.config import Settings
    from intake.runtime import Runtime

    rt = Runtime(Settings.from_env({"DATABASE_URL": db_url}), queue=InlineQueue())
    a = make_inquiry(rt, subject="Podcast", body="an episode", sender="host@radio.example", category="press")
    make_inquiry(rt, subject="Apply", body="deadline", sender="x@example.org")
    rt.db.dispose()
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": "", "SLACK_BOT_TOKEN": "", "SMTP_URL": ""}
    ok = CliRunner().invoke(main, ["list", "--json", "--query", "category:press since:1d"], env=env)
    assert ok.exit_code == 0, ok.output
    assert [row["id"] for row in json.loads(ok.output)] == [a]
    narrowed = CliRunner().invoke(main, ["list", "--json", "--status", "closed", "--query", "category:press"], env=env)
    assert json.loads(narrowed.output) == []
    bad = CliRunner().invoke(main, ["list", "--query", "category:pres"], env=env)
    assert bad.exit_code != 0 and "'category:pres'" in bad.output and "unknown category" in bad.output


def test_compiled_query_is_one_select_using_the_status_index(rt, desk):
    """The filters compile to one statement; PostgreSQL's planner may use the indexes on
    (status, category, received_at) and (assignee, status)."""
    stmt = search.compile_query(parse("status:open category:press assignee:U100", categories=CATEGORIES))
    compiled = str(stmt.compile(rt.db.engine))
    assert compiled.count("SELECT") == 1 and "inquiries.status IN" in compiled
    if rt.db.engine.dialect.name == "sqlite":
        with rt.db.engine.connect() as conn:
            plan = " ".join(str(r) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(stmt.compile(rt.db.engine, compile_kwargs={"literal_binds": True}))))
        assert "ix_inquiries_" in plan
