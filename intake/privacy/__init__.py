"""Privacy: erase a person, export a person, retention. Free of Flask and Slack.

    footprint.find(session, address)             who a person is in the store (one rule)
    actions.forget(session, address, actor=...)  erase them; one audit event remains
    actions.delete_inquiry(session, id, actor=...)
    export.export_person(session, address)       the subject access document
    retention.purge(rt, policy, at)              the [retention] policy, batch by batch
    run.forget_person / delete_inquiry / apply_retention
                                                 the above, then the files and the Slack plans

Commands (`intake forget`, `export`, `delete`, `purge`) are in ``commands``; the daily job in
``jobs``. The Slack side (cards replaced by a placeholder, thread lines deleted, the "Forget
this person" shortcut) lives in ``intake.slack.erasure`` and ``intake.slack.forget``.
"""
