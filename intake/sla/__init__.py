"""Response targets: business calendar, the response clock on each inquiry, reminders, reports.

- ``settings``: the ``[sla]`` table of ``INTAKE_CONFIG``, parsed once into :class:`SlaSettings`.
- ``calendar``: pure business-time arithmetic (no database, no clock of its own).
- ``clock``: what each lifecycle step does to an inquiry's targets, and its state at a moment.
- ``notices``, ``schedule``: what is owed to staff now (reminders and escalations for targets,
  the daily digest, the weekly report), owed to the outbox under unique keys (the run keys), so
  several workers never do the same twice; delivered by the Slack layer (``intake.slack.sla``).
- ``digest``, ``report``, ``chart``: what the digest lists, the figures, the chart.
- ``jobs``: the periodic ``sla.tick``; ``commands``: `intake due` and `intake report`.

Nothing in this package knows Flask or Slack.
"""
