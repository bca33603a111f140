"""Runs and models on the test MLflow server, made without touching MLflow's process-wide active
experiment (which would leak into other tests that resume runs); and a stand-in ingress in front
of that server, which wants a bearer token and may speak TLS with a certificate of its own CA."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow

from adautomix.tracking import connect


def experiment_id(name: str) -> str:
    client = connect()
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def logged_model(experiment: str = "registry-tests", tags: dict[str, str] | None = None) -> str:
    """The URI of a model entity in a finished run (with `tags`); the registry needs no weights
    to register it."""
    with mlflow.start_run(experiment_id=experiment_id(experiment), tags=tags) as run:
        model = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
    return f"models:/{model.model_id}"


# --- a stand-in ingress ----------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        ingress = self.server
        ingress.authorizations.append(self.headers.get("Authorization"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"Bearer {ingress.token}":
            return self._send(
                401, b'{"message": "no valid bearer token"}', {"Content-Type": "application/json"}
            )
        upstream = http.client.HTTPConnection(
            ingress.upstream.hostname, ingress.upstream.port, timeout=60
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self._send(
            answer.status,
            data,
            {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP},
        )

    def _send(self, status: int, data: bytes, headers: dict[str, str]):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


class Ingress(ThreadingHTTPServer):
    """Forwards every request to `upstream` that carries `Authorization: Bearer TOKEN`, answers
    401 to the rest, and keeps the Authorization header of each request it saw."""

    daemon_threads = True

    def __init__(self, upstream: str, token: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.token = urllib.parse.urlsplit(upstream), token
        self.authorizations: list[str | None] = []


def certificate_authority(folder: Path) -> tuple[Path, Path, Path]:
    """A fresh CA and a server certificate it signs for 127.0.0.1: (CA bundle, server
    certificate, server key) as PEM files in `folder`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "adautomix test CA")])
    ca = certificate(
        ca_name,
        ca_name,
        ca_key,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    server = certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
        ca_name,
        server_key,
        ca_key,
        [
            (
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            ),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextlib.contextmanager
def ingress(upstream: str, token: str, tls: tuple[Path, Path] | None = None):
    """An Ingress in front of `upstream` until the block ends, over TLS with (certificate, key)
    when given; yields (its URL, the Ingress)."""
    server = Ingress(upstream, token)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_port}", server
    finally:
        server.shutdown()
        server.server_close()
