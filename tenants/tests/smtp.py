"""A real SMTP server for tests (aiosmtpd, in a thread) on a port that refuses connections until it is started."""

import email
import socket
import time

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """`messages` holds what it accepted; addresses in `refused` get a permanent 550 at RCPT;
    `delay` seconds are spent in DATA (a slow server, to race two senders)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[email.message.Message] = []
        self.refused: set[str] = set()
        self.delay = 0.0
        self._controller = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay)  # blocks the server's loop on purpose: one message at a time, slowly
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def start(self) -> "SmtpServer":
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def bodies(self) -> list[str]:
        """Each message's text (the text/plain part of a message with attachments)."""
        texts = []
        for message in self.messages:
            part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
            texts.append(part.get_payload(decode=True).decode().replace("\r\n", "\n"))
        return texts

    def attachments(self, index: int = 0) -> list[tuple[str, str]]:
        """(filename, content type) of the attachments of message ``index``."""
        return [(p.get_filename(), p.get_content_type()) for p in self.messages[index].walk() if p.get_filename()]


@pytest.fixture(name="smtp")
def smtp_fixture(settings):
    """The portal's SMTP backend pointed at a local port where nothing listens yet (the mail server is
    down); `smtp.start()` brings the server up on it."""
    server = SmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.stop()
