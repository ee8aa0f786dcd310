"""The outbound layer's outbox deliverers, registered on import (see intake/outbox/core.py).

- ``email.acknowledge``: decide whether a new inquiry gets an automatic acknowledgment and, if
  so, queue it (intake/outbound/acknowledge.py);
- ``email.send``: send one queued outbound message over SMTP (intake/outbound/sending.py).
"""

from intake.outbound.acknowledge import deliver_acknowledgment
from intake.outbound.sending import deliver_email

__all__ = ["deliver_acknowledgment", "deliver_email"]
