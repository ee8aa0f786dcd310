"""`GET /` and `HEAD /`: the page someone who opens the deployed URL sees, and `/readme`."""

from __future__ import annotations

import dataclasses

import pytest

from intake.app import create_app
from intake.queue import HueyQueue
from intake.runtime import Runtime


SECRET_VALUES = ("s3cret-hmac-value", "hook:pa55word", "key-mailgun-xyz")


@pytest.fixture
def configured(settings):
    return dataclasses.replace(
        settings, inbound_hmac_secrets=(SECRET_VALUES[0],), inbound_basic_auth=(SECRET_VALUES[1],),
        mailgun_signing_keys=(SECRET_VALUES[2],),
    )


def client_for(settings, db, queue=None):
    queue = queue or HueyQueue(settings, name="apptest-home")
    return create_app(rt=Runtime(settings, db, queue=queue)).test_client()


def test_home_page_says_what_this_is_health_endpoints_and_links_the_readme(configured, db):
    response = client_for(configured, db).get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "inquiry desk" in page
    assert ">healthy<" in page
    for endpoint in ("/inbound/sendgrid", "/inbound/mailgun", "/inbound/postmark", "/inbound/ses",
                     "/inbound/mime", "/slack/events", "/healthz"):
        assert endpoint in page, endpoint
    assert 'href="/readme"' in page
    for secret in SECRET_VALUES:
        assert secret not in page


def test_home_page_names_unset_credentials_never_values(settings, db):
    page = client_for(settings, db).get("/").get_data(as_text=True)
    assert "not set (INBOUND_HMAC_SECRET): refuses every request" in page
    assert "not set (MAILGUN_SIGNING_KEY)" in page


def test_head_answers_like_get_without_a_body(configured, db):
    response = client_for(configured, db).head("/")
    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.mimetype == "text/html"


class BrokenQueue:
    """A queue whose health check fails with an error whose name is markup."""

    error = type("<script>alert(1)</script>", (Exception,), {})

    def bind(self, rt) -> None:
        pass

    def ping(self) -> None:
        raise self.error("down")


def test_unhealthy_is_503_and_everything_shown_is_escaped(configured, db):
    response = client_for(configured, db, BrokenQueue()).get("/")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert ">unhealthy<" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_readme_is_the_installed_readme(configured, db):
    response = client_for(configured, db).get("/readme")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).startswith("# intake")
    assert "X-Intake-Signature" in response.get_data(as_text=True)
