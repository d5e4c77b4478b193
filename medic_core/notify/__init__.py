"""Handing alert transitions to notifier plugins: routed and durable (``router.py`` writes the
outbox, ``delivery.py`` sends it), plus the in-process ``MEDIC_NOTIFIERS`` broadcast
(``broadcast.py``). ``notify`` may import ``alerts``; ``alerts`` never imports ``notify``."""
