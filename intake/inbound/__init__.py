"""Inbound email webhooks: one module per provider, each with its verification beside its parser.

``sendgrid``, ``mailgun``, ``postmark``, ``ses`` (through SNS) and ``mime`` (raw RFC 822 with an
HMAC header) each expose ``receive(request, settings) -> Delivery | Acknowledged``. ``base`` holds
the shared request, result and error types, ``forms`` reads form bodies as raw bytes, and ``mime``
also rebuilds a message from a provider's parsed fields. Nothing here touches the database or
Flask; ``intake.app`` does both.
"""
