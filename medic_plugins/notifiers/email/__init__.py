"""The ``email`` notifier: alert mails over SMTP with STARTTLS, as plain text and HTML.

Design:

* ``SmtpOptions`` is the slice of the settings this plugin reads (``MEDIC_SMTP_*`` and
  ``MEDIC_NOTIFY_TIMEOUT``). ``SmtpRelay`` opens one SMTP session per delivery: connect, EHLO,
  STARTTLS, login when a user name is set. Without STARTTLS on offer it stops before sending a
  credential or a byte of the alert (a server that does not offer it may be a downgrade attack).
  There is no connection pool: alert mail is rare, and a fresh session never trips over a
  connection the server dropped while idle.
* The server's certificate and host name are verified against the system's trust store, or only
  against the CAs in ``MEDIC_SMTP_CA_FILE``. The TLS context is built once, off the event loop.
* Rendering is pure: ``render_message`` turns a ``Notification`` into an ``EmailMessage`` with a
  plain-text part and an HTML alternative. Everything in an alert may be user-supplied text, so
  the HTML escapes all of it, links only http(s) URLs and loads nothing from outside, and headers
  lose control characters (no header injection).
* Threading: ``send`` returns ``{"message_id": ...}`` — the ``Message-ID`` of the first mail
  about the alert. Medic hands it back in ``Notification.state``; later mails (acknowledged,
  resolved...) carry it in ``In-Reply-To`` and ``References``, so mail clients show them under
  the opening mail.
* Failures are ``DeliveryError``: permanent SMTP replies (5xx), an untrusted certificate, a
  server without STARTTLS and missing configuration are not retryable; transient replies (4xx),
  timeouts and connection errors are. Once the server has accepted the message the mail counts
  as sent: a failing QUIT is ignored, so a retry never delivers it twice.

Modules: ``relay`` (the settings it reads and the SMTP session), ``message`` (the mail, rendered
purely), ``notifier`` (the notifier, its configuration schema and the ``smtp`` health check),
``plugin`` (the hooks, its entry point).
"""
