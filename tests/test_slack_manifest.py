"""The Slack app manifest matches what the code listens for."""

from __future__ import annotations

from pathlib import Path

import yaml

from intake.slack import commands, forget, shortcuts
from intake.slack.app import EVENTS_PATH

REPO = Path(__file__).resolve().parent.parent


def load() -> dict:
    return yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))


def test_root_and_packaged_manifests_are_identical():
    assert (REPO / "manifest.yml").read_bytes() == (REPO / "intake" / "slack" / "manifest.yml").read_bytes()


def test_manifest_matches_the_listeners():
    manifest = load()
    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [commands.COMMAND]
    callbacks = {(s["type"], s["callback_id"]) for s in features["shortcuts"]}
    assert callbacks == {("message", shortcuts.LOG_MESSAGE_CALLBACK), ("global", shortcuts.NEW_INQUIRY_CALLBACK),
                         ("message", forget.FORGET_CALLBACK)}
    urls = [features["slash_commands"][0]["url"], settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"]]
    assert all(url == f"https://YOUR-APP{EVENTS_PATH}" for url in urls)
    assert features["app_home"]["home_tab_enabled"] is True
    assert {"app_home_opened", "message.channels"} <= set(settings["event_subscriptions"]["bot_events"])
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "channels:read", "channels:history", "files:read",
            "users:read", "users:read.email", "usergroups:read"} <= scopes
