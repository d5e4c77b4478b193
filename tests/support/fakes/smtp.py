"""A real SMTP server on 127.0.0.1 for the email notifier's tests.

It is aiosmtpd (threaded ``Controller``, its own event loop) with what a submission server on
port 587 does: STARTTLS with a certificate from a throw-away CA (``trustme``; its PEM is written
to ``ca_file`` for ``MEDIC_SMTP_CA_FILE``), no command but EHLO/NOOP/STARTTLS/QUIT before TLS,
and AUTH PLAIN/LOGIN checked against one fixed user. It records what clients do — AUTH attempts,
MAIL commands and whether they came over TLS — and every accepted message (envelope and parsed
``EmailMessage``). ``reject_next`` makes it refuse the next messages with a chosen SMTP reply,
``refuse_recipient`` one address for good.

``starttls=False`` is a server that offers no TLS but happily takes AUTH and mail in clear: the
notifier must not use it when TLS was asked for.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "medic-test"
PASSWORD = "correct horse battery staple"

Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None


@dataclass(frozen=True)
class Rejection:
    stage: Stage
    reply: str


class _Recorder:
    """aiosmtpd handler: runs in the server's thread, so every shared list is under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.auth_attempts: list[tuple[str, str, bool, bool]] = []  # mechanism, login, tls, ok
        self.mail_commands: list[tuple[str, bool]] = []  # sender, tls
        self.noops = 0
        self.rejections: deque[Rejection] = deque()
        self.refused_recipients: dict[str, str] = {}
        self._current: dict[int, Rejection] = {}

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == PASSWORD.encode()
        )
        login = data.login.decode(errors="replace") if isinstance(data, LoginPassword) else ""
        with self.lock:
            self.auth_attempts.append((mechanism, login, session.ssl is not None, ok))
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _rejection(self, session: Session, stage: Stage) -> str | None:
        with self.lock:
            current = self._current.get(id(session))
            if current is not None and current.stage == stage:
                del self._current[id(session)]
                return current.reply
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.mail_commands.append((address, session.ssl is not None))
            self._current.pop(id(session), None)
            if self.rejections:
                self._current[id(session)] = self.rejections.popleft()
        reply = self._rejection(session, "mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            current = self._current.get(id(session))
            refused = self.refused_recipients.get(address)
        if current is not None and current.stage == "rcpt":
            return current.reply  # every recipient of this transaction is refused
        if refused is not None:
            return refused
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._rejection(session, "data")
        if reply:
            return reply
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            message=parsed,
            raw=raw,
            tls=session.ssl is not None,
            login=login,
        )
        with self.lock:
            self.received.append(mail)
        return "250 2.0.0 OK queued"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        with self.lock:
            self.noops += 1
        return "250 OK"


class _Controller(Controller):
    """Listens on a free port the OS picks (aiosmtpd needs the port to poke its own server)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSmtpServer:
    """``with FakeSmtpServer(tmp_path) as smtp:`` — a submission server on 127.0.0.1."""

    host = "127.0.0.1"
    user = USER
    password = PASSWORD

    def __init__(
        self,
        directory: Path,
        *,
        starttls: bool = True,
        cert_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.ca = trustme.CA()
        self.ca_file = directory / "smtp-test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.starttls = starttls
        self._running = False
        self._recorder = _Recorder()
        tls: ssl.SSLContext | None = None
        if starttls:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(*cert_hosts).configure_cert(tls)
        self._controller = _Controller(
            self._recorder,
            hostname=self.host,
            port=0,
            server_hostname="smtp.medic.test",
            tls_context=tls,
            require_starttls=starttls,
            authenticator=self._recorder.authenticate,
            auth_required=starttls,
            auth_require_tls=starttls,  # without TLS: AUTH offered in clear, a trap
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> FakeSmtpServer:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop listening (idempotent): connections are refused afterwards."""
        if self._running:
            self._controller.stop()
            self._running = False

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reject_next(self, reply: str, *, count: int = 1, stage: Stage = "data") -> None:
        """Refuse the next ``count`` messages with ``reply`` (e.g. ``"550 5.1.1 No such user"``)
        at MAIL, RCPT (every recipient) or after DATA."""
        with self._recorder.lock:
            self._recorder.rejections.extend(Rejection(stage, reply) for _ in range(count))

    def refuse_recipient(self, address: str, reply: str) -> None:
        """Always refuse RCPT TO ``address`` with ``reply`` (other recipients are taken)."""
        with self._recorder.lock:
            self._recorder.refused_recipients[address] = reply

    @property
    def received(self) -> list[ReceivedMail]:
        with self._recorder.lock:
            return list(self._recorder.received)

    @property
    def auth_attempts(self) -> list[tuple[str, str, bool, bool]]:
        """``(mechanism, login, over TLS, accepted)`` for every AUTH."""
        with self._recorder.lock:
            return list(self._recorder.auth_attempts)

    @property
    def mail_commands(self) -> list[tuple[str, bool]]:
        """``(sender, over TLS)`` for every MAIL FROM, accepted or not."""
        with self._recorder.lock:
            return list(self._recorder.mail_commands)

    @property
    def noops(self) -> int:
        with self._recorder.lock:
            return self._recorder.noops
