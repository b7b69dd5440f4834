"""uvicorn's httptools protocol, answering requests its parser refuses with an OCPI envelope.

A header value with CR, LF or another control character is not valid HTTP; the parser refuses it before the
hub sees it. Parties still get what every other refusal gives them: JSON with status_code 2001 (HTTP 400).
Must not: change how valid requests are parsed.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.envelope import envelope


class OcpiHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = envelope(2001, f"malformed HTTP request: {msg}")
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
