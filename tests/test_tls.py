"""TLS through an endpoint string, end to end: a generated self-signed
certificate, a real ``twistd -n parkchat --port ssl:...`` on loopback,
/health over https and a WebSocket over wss; the same run checks that
``--log-format json`` makes every line of twistd's output a JSON object."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e_support import CLEAN_EXITS, LOOPBACK, ParkchatProcess, basic_auth

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from websockets.sync.client import connect
except ImportError:  # pragma: no cover - twisted[tls] brings cryptography
    x509 = None  # type: ignore[assignment]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; key and cert PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parkchat test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class TlsProcess(ParkchatProcess):
    """ParkchatProcess listening with ``ssl:`` and logging JSON to stdout."""

    def __init__(self, workdir: Path, key: Path, cert: Path, **kwargs: Any) -> None:
        super().__init__(workdir, tcp=False, **kwargs)
        self.key, self.cert = key, cert
        self.context = ssl.create_default_context(cafile=str(cert))

    def url(self, path: str = "/") -> str:
        return f"https://{LOOPBACK}:{self.http_port}{path}"

    def ws_url(self, path: str) -> str:
        return f"wss://{LOOPBACK}:{self.http_port}{path}"

    def argv(self) -> list[str]:
        port = (
            f"ssl:{self.http_port}:interface={LOOPBACK}:privateKey={self.key}:certKey={self.cert}"
        )
        return [
            *super().argv()[:1],
            "--nodaemon",
            "--pidfile=",
            "parkchat",
            "--port",
            port,
            "--db",
            self.db,
            "--bcrypt-rounds",
            str(self.bcrypt_rounds),
            "--log-format",
            "json",
            *self.args,
        ]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                self.url("/health"), timeout=1, context=self.context
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
            return response.status, response.read()

    def post_json(self, path: str, body: dict[str, Any]) -> int:
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
            return int(response.status)


class TlsEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        if x509 is None:
            self.skipTest("cryptography or websockets is not installed")
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        key, cert = make_certificate(workdir)
        self.server = TlsProcess(workdir, key, cert)
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_https_and_wss(self) -> None:
        """/health and /health/ready answer over https, a WebSocket works over
        wss with a client that trusts only the generated certificate, SIGTERM
        stops the server cleanly, and every output line was JSON."""
        server = self.server
        self.assertEqual(server.get("/health"), (200, b"OK"))
        status, body = server.get("/health/ready")
        self.assertEqual((status, json.loads(body)["database"]), (200, "ok"))
        self.assertEqual(
            server.post_json("/register", {"nickname": "tina", "password": "pw-tina"}), 201
        )
        with connect(
            server.ws_url("/ws/lobby"),
            ssl=server.context,
            additional_headers={"Authorization": basic_auth("tina", "pw-tina")},
            open_timeout=5,
        ) as ws:
            joined = json.loads(ws.recv(timeout=5))
            self.assertEqual((joined["type"], joined["nickname"]), ("system", "tina"))
            ws.send(json.dumps({"content": "over TLS"}))
            echoed = json.loads(ws.recv(timeout=5))
            self.assertEqual(echoed["content"], "over TLS")
        status, metrics = server.get("/metrics")
        self.assertIn(b"parkchat_messages_stored_total 1.0", metrics)
        with self.assertRaises(urllib.error.URLError):  # not trusted by default
            urllib.request.urlopen(server.url("/health"), timeout=5)
        self.assertEqual(server.get("/health"), (200, b"OK"))
        self.assertIn(server.stop(), CLEAN_EXITS)
        lines = server.output_path.read_text().splitlines()
        self.assertTrue(lines)
        records = [json.loads(line) for line in lines]  # every line is JSON
        messages = " ".join(r["message"] for r in records)
        self.assertIn("tina joined lobby", messages)
        self.assertNotIn("pw-tina", server.output_path.read_text())
