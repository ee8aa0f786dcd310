"""Slack triage: the Bolt app, its listeners, Block Kit builders and the jobs that post.

Layout (bolt-python's starter-template shape):

- ``app.py``: ``build_bolt_app(rt)`` and ``register_flask(flask_app, rt)`` (``/slack/events``);
- ``actions.py``, ``commands.py``, ``events.py``, ``shortcuts.py``, ``views.py``, ``home.py``:
  thin listeners, registered from ``app.register_listeners``;
- ``blocks.py``: pure Block Kit builders; ``escaping.py``: the one helper for untrusted text;
- ``queries.py``: read-only queries behind cards, lists and App Home;
- ``jobs.py``: ``slack.sync_card``, ``slack.post_followup``, ``slack.post_event``, ``slack.digest``;
- ``client.py``: the WebClient with retry handlers; ``authz.py``: who may act;
- ``socket.py``: ``intake slack socket``.

Importing the package does no work and opens no connection.
"""
