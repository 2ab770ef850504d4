"""Sending one delivery: an e-mail through ``smtp_url`` (smtplib, optional credentials and
STARTTLS) or a webhook POST (httpx). Each raises :class:`SendError` when the try failed."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpx

from opendps.net.safety import UnsafeUrl, UrlPolicy

if TYPE_CHECKING:
    from opendps.settings import Settings

TIMEOUT = 10.0  # seconds for one SMTP session or one POST


class SendError(Exception):
    """A try failed; ``final`` when trying again cannot help."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def check_target_url(settings: Settings, url: str) -> None:
    """Whether this server may POST to ``url``: the one place a webhook or callback target
    is checked before each try — http(s) only, and DESIGN §11's URL policy (no loopback or
    private targets with auth on unless ``allow_private_urls``; the address each request
    actually reaches is checked again by the client of :func:`send_webhook`)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise SendError(f"{url!r} is not an http(s) URL", final=True)
    try:
        UrlPolicy.from_settings(settings).check_host_literal(url, "webhook")
    except UnsafeUrl as exc:
        raise SendError(exc.message, final=True) from None


def send_webhook(settings: Settings, url: str, body: str, content_type: str) -> int:
    """POST ``body``; 2xx/3xx/4xx other than 408/429 end the delivery (a 4xx will not get
    better), 5xx, 408, 429 and connection errors are tried again."""
    check_target_url(settings, url)
    policy = UrlPolicy.from_settings(settings)
    try:
        with policy.client("webhook", timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.post(
                url,
                content=body.encode(),
                headers={"Content-Type": content_type, "User-Agent": "opendps"},
            )
    except UnsafeUrl as exc:
        raise SendError(exc.message, final=True) from None
    except httpx.HTTPError as exc:
        raise SendError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise SendError(f"POST {url} answered {response.status_code}")
    if response.status_code >= 400:
        raise SendError(f"POST {url} answered {response.status_code}", final=True)
    return response.status_code


def send_email(settings: Settings, to: list[str], subject: str, body: str) -> None:
    if not settings.smtp_url:
        raise SendError("smtp_url is not set", final=True)
    parts = urlsplit(settings.smtp_url)
    if parts.scheme not in ("smtp", "smtps"):
        raise SendError(f"smtp_url must be smtp:// or smtps://; got {parts.scheme}://", final=True)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    username = settings.smtp_username or (unquote(parts.username) if parts.username else None)
    password = settings.smtp_password or (unquote(parts.password) if parts.password else None)
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(body)
    try:
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=TIMEOUT, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with client:
            if settings.smtp_starttls:
                client.starttls(context=ssl.create_default_context())
            if username:
                client.login(username, password or "")
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"SMTP login refused: {exc.smtp_code}", final=True) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendError(
            f"SMTP refused the recipients {sorted(exc.recipients)}", final=True
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}") from exc
