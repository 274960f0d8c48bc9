"""The collector's private PKI: a CA that agents are installed with, and the server certificate.
ECDSA P-256; the CA key never leaves the TLS directory, installers get ca.pem only.
Design notes: docs/security.md, "collector/security/tls.py".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cxpulse.atomicfile import write_atomic

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity common TLS clients accept for a server certificate


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


# A CA key that can sign: ours is EC (make_ca); an RSA or EdDSA one an administrator put there works too.
_SIGNING_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(
    common_name: str = "cxpulse collector CA", days: int = CA_DAYS, not_before: dt.datetime | None = None
) -> Issued:
    key = _key()
    start = not_before or _now() - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Issued,
    *,
    names: Sequence[str] = (),
    ips: Sequence[str] = (),
    client: bool = False,
    days: int = SERVER_DAYS,
    not_before: dt.datetime | None = None,
    common_name: str = "",
) -> Issued:
    """A leaf certificate signed by ``ca``: a server one for these names/IPs, or a client one (mutual TLS)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    if not isinstance(ca_key, _SIGNING_KEYS):  # not DH or X25519: those cannot sign
        raise ValueError("the CA key is of a kind that cannot sign certificates")
    key = _key()
    start = not_before or _now() - dt.timedelta(minutes=5)
    cn = common_name or (names[0] if names else ips[0] if ips else "cxpulse")
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def init_dir(tls_dir: str | os.PathLike, names: list[str], ips: list[str], *, renew: bool = False) -> dict[str, str]:
    """Create (or keep) the CA and issue the server certificate; returns what was done per file.

    An existing CA is always kept: agents in the field trust it, and a new one would cut them all
    off. The server certificate is reissued when asked (``renew``), when the names differ, or
    when it is missing.
    """
    d = Path(tls_dir)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    done = {}
    if (d / CA_CERT).exists() and (d / CA_KEY).exists():
        ca = Issued((d / CA_CERT).read_bytes(), (d / CA_KEY).read_bytes())
        done[CA_CERT] = "kept"
    else:
        ca = make_ca()
        write_atomic(d / CA_KEY, ca.key_pem, mode=0o600)
        write_atomic(d / CA_CERT, ca.cert_pem, mode=0o644)
        done[CA_CERT] = "created"
    want = sorted(names), sorted(str(ipaddress.ip_address(i)) for i in ips)
    current = cert_names(d / SERVER_CERT) if (d / SERVER_CERT).exists() and (d / SERVER_KEY).exists() else None
    if renew or current != want:
        leaf = issue(ca, names=list(names), ips=list(ips))
        write_atomic(d / SERVER_KEY, leaf.key_pem, mode=0o600)
        write_atomic(d / SERVER_CERT, leaf.cert_pem + ca.cert_pem, mode=0o644)
        done[SERVER_CERT] = "renewed" if current is not None else "created"
    else:
        done[SERVER_CERT] = "kept"
    return done


def cert_names(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return sorted(san.get_values_for_type(x509.DNSName)), sorted(
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    )


def cert_expiry(path: str | os.PathLike) -> dt.datetime:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())[0].not_valid_after_utc


@dataclass(frozen=True)
class ServerTls:
    """What ``collector serve`` listens with; ``client_ca`` set means mutual TLS is required."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None = None
    source: str = ""

    def credentials(self):
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


class TlsConfigError(ValueError):
    pass


def load_server_tls(tls_dir: str = "", cert: str = "", key: str = "", client_ca: str = "") -> ServerTls | None:
    """Server TLS from a directory or explicit files; None when none was given. Fails fast on a
    missing or unreadable file and on a key that does not belong to its certificate."""
    if tls_dir and (cert or key):
        raise TlsConfigError("give either --tls-dir or --tls-cert/--tls-key, not both")
    if tls_dir:
        cert, key = os.path.join(tls_dir, SERVER_CERT), os.path.join(tls_dir, SERVER_KEY)
    if bool(cert) != bool(key):
        raise TlsConfigError("--tls-cert and --tls-key go together")
    if not cert:
        if client_ca:
            raise TlsConfigError("--client-ca needs a server certificate (--tls-dir or --tls-cert/--tls-key)")
        return None
    try:
        chain, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
        ca = Path(client_ca).read_bytes() if client_ca else None
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS material: {exc}") from None
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
        priv = serialization.load_pem_private_key(key_pem, None)
    except ValueError as exc:
        raise TlsConfigError(f"TLS material is not PEM certificate/key: {exc}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, pub) != priv.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise TlsConfigError(f"{key} is not the key of {cert}")
    if leaf.not_valid_after_utc < _now():
        raise TlsConfigError(f"the server certificate {cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    return ServerTls(chain, key_pem, ca, source=tls_dir or cert)
