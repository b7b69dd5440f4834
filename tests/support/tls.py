"""A throw-away certificate authority for tests over TLS: a server certificate for 127.0.0.1 (via ``trustme``)
written to PEM files a hub can be started with, and a client SSL context that trusts only that CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    certfile: Path  # the server certificate followed by its chain (PEM)
    keyfile: Path  # its private key (PEM)
    client_context: ssl.SSLContext  # verifies the server against the test CA


def self_signed(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """Issue a certificate for ``host`` from a fresh CA; write it under ``directory``."""
    ca = trustme.CA()
    issued = ca.issue_cert(host)
    certfile = directory / "server-cert.pem"
    keyfile = directory / "server-key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    keyfile.write_bytes(issued.private_key_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return TlsFiles(certfile, keyfile, context)
