"""Response targets: business calendar, the response clock on each inquiry, reminders, reports.

- ``settings``: the ``[sla]`` table of ``INTAKE_CONFIG``, parsed once into :class:`SlaSettings`.
- ``calendar``: pure business-time arithmetic (no database, no clock of its own).
- ``clock``: what each lifecycle step does to an inquiry's targets, and its state at a moment.
- ``notices``, ``digest``, ``report``: what is owed to staff (reminders, the daily digest, the
  weekly figures), decided here and delivered by the Slack layer (``intake.slack.sla``).
- ``runs``: a unique row per run key, so several workers never do the same period twice.

Nothing in this package knows Flask or Slack.
"""
