"""The SMTP side of the email notifier: the settings it reads, one session per delivery, and
how SMTP failures become ``DeliveryError`` (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from medic_core.plugins.interfaces import (
    DeliveryError,
    HealthResult,
)

log = logging.getLogger("medic.notify.email")

NOT_CONFIGURED = "email is not configured: set MEDIC_SMTP_HOST and MEDIC_SMTP_FROM"


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """What the email plugin reads from the settings."""

    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    sender: str = ""
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpOptions:
        if settings is None:
            return cls()
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            ca_file=settings.smtp_ca_file,
            sender=settings.smtp_from,
            timeout=settings.notify_timeout,
        )

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


def client_tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Verifying client context: the system's trust store, or only the CAs in ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SmtpRelay:
    """The configured SMTP server: opens verified, authenticated sessions to it."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._probing: asyncio.Future[HealthResult] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.options.host and self.options.sender)

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                self._tls = await asyncio.to_thread(client_tls_context, self.options.ca_file)
            except OSError as exc:  # ssl.SSLError is an OSError
                raise DeliveryError(
                    f"cannot load MEDIC_SMTP_CA_FILE {self.options.ca_file!r}: {exc}",
                    retryable=False,
                ) from exc
        return self._tls

    @contextlib.asynccontextmanager
    async def session(self, timeout: float) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client: TLS (when asked for) and logged in (when a user is set).

        On exit the connection is dropped at once, whatever happened: SMTP's QUIT (sent by the
        caller) ends a session, so there is nothing to wait for in TLS's closing handshake.
        """
        options = self.options
        tls = await self._tls_context() if options.starttls else None
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=options.host,
            port=options.port,
            timeout=timeout,
            use_tls=False,
            start_tls=False,  # upgraded below, where a missing STARTTLS is an error
            tls_context=tls,
            local_hostname=self._local_hostname,
        )
        transport: asyncio.BaseTransport | None = None
        try:
            await client.connect()
            transport = client.transport
            if options.starttls:
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise DeliveryError(
                        f"SMTP server {options.server} does not offer STARTTLS; refusing to "
                        "send credentials or alerts in clear (MEDIC_SMTP_STARTTLS is on)",
                        retryable=False,
                    )
                await client.starttls()
                transport = client.transport
            if options.username:
                await client.login(options.username, options.password)
            yield client
        finally:
            client.close()
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()

    async def deliver(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send ``message``; return the recipients the server refused (when it took others)."""
        if not self.configured:
            raise DeliveryError(NOT_CONFIGURED, retryable=False)
        timeout = self.options.timeout
        sent: tuple[dict[str, aiosmtplib.SMTPResponse], str] | None = None
        try:
            async with asyncio.timeout(timeout), self.session(timeout) as client:
                sent = await client.send_message(message)
                await client.quit()
        except Exception as exc:
            if sent is None:
                if isinstance(exc, DeliveryError):
                    raise
                raise delivery_error(exc, self.options) from exc
            # The server took the message: a failed QUIT does not undo that, and a retry would
            # deliver it twice.
        assert sent is not None
        return sent[0]

    async def probe(self, timeout: float) -> HealthResult:
        """Connect, EHLO, STARTTLS, login, NOOP and QUIT; send nothing.

        Every email target uses the same server, so callers that ask while a test is running
        (Medic checks all targets at once) share it instead of logging in once per target.
        """
        if not self.configured:
            return HealthResult("down", NOT_CONFIGURED)
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe(timeout))
        return await asyncio.shield(self._probing)

    async def _probe(self, timeout: float) -> HealthResult:
        try:
            async with asyncio.timeout(timeout), self.session(timeout) as client:
                await client.noop()
                await client.quit()
        except Exception as exc:
            return HealthResult("down", str(delivery_error(exc, self.options, timeout=timeout)))
        options = self.options
        parts = [options.server, "STARTTLS" if options.starttls else "no TLS"]
        if options.username:
            parts.append(f"logged in as {options.username}")
        return HealthResult("ok", ", ".join(parts))


# -- failures ------------------------------------------------------------------------------------


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _by_code(code: int | None, message: str) -> DeliveryError:
    # 5xx: permanent (550 mailbox unavailable, 553 bad address, 554, 535 bad credentials...);
    # 4xx: transient (421 service unavailable, 450/451/452 try again later).
    permanent = code is not None and 500 <= code < 600
    return DeliveryError(message, status_code=code, retryable=not permanent)


def delivery_error(
    exc: BaseException, options: SmtpOptions, *, timeout: float | None = None
) -> DeliveryError:
    """Map what aiosmtplib (or the network) raised to a ``DeliveryError``."""
    server = options.server
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        transient = [c for c in codes if 400 <= c < 500]
        code = transient[0] if transient else (codes[0] if codes else None)
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return _by_code(code, f"SMTP server {server} refused every recipient: {refused}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _by_code(
            exc.code,
            f"SMTP server {server} refused the login of {options.username!r}: "
            f"{exc.code} {exc.message} (check MEDIC_SMTP_USERNAME / MEDIC_SMTP_PASSWORD)",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"SMTP server {server} replied {exc.code} {exc.message}")
    verify = _find(exc, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"certificate of SMTP server {server} is not trusted: {verify.verify_message} "
            "(MEDIC_SMTP_CA_FILE names the CAs to trust; empty: the system's)",
            retryable=False,
        )
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        seconds = options.timeout if timeout is None else timeout
        return DeliveryError(f"SMTP server {server} did not answer within {seconds:g}s")
    if isinstance(exc, OSError):  # refused or dropped connections, TLS errors
        return DeliveryError(f"cannot talk to SMTP server {server}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # The server lacks something this mail needs (AUTH, SMTPUTF8...): retrying won't help.
        return DeliveryError(f"SMTP server {server}: {exc}", retryable=False)
    if isinstance(exc, ValueError):  # an address aiosmtplib cannot send to
        return DeliveryError(f"cannot send to SMTP server {server}: {exc}", retryable=False)
    return DeliveryError(f"SMTP delivery to {server} failed: {type(exc).__name__}: {exc}")


# -- rendering -----------------------------------------------------------------------------------
