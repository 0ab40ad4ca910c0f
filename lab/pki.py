"""Certificates and keys for one lab control plane, generated fresh into its temp folder.

ECDSA P-256 throughout: generating it takes microseconds, where RSA would add seconds to start-up.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path  # O=system:masters: full access whatever RBAC says
    admin_key: Path
    sa_public_key: Path  # service-account tokens: the API server signs and checks them
    sa_private_key: Path
    # kube-apiserver → kubelet (pods/log, exec): the API server's client identity, and the serving
    # certificate a kubelet simulator presents (checked against ca_cert, as --kubelet-certificate-authority)
    kubelet_client_cert: Path
    kubelet_client_key: Path
    kubelet_serving_cert: Path
    kubelet_serving_key: Path
    # Kept so a real lab can issue its nodes' and components' certificates (`issue`) from the same CA.
    ca_key: Path | None = None

    def issue(
        self, stem: str, cn: str, org: str | None = None, *, server: bool = False, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """A client (or, with `server`, serving) certificate signed by this CA: `<stem>.crt`, `<stem>.key`."""
        if self.ca_key is None:
            raise ValueError("this Pki was created without keeping its CA key")
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.ca_key} is not the lab CA's elliptic-curve key")
        ca_name = x509.load_pem_x509_certificate(self.ca_cert.read_bytes()).subject
        key = _key()
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName(name) for name in dns]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = _cert(_name(cn, org), key, ca_name, ca_key, usage=[usage], sans=sans or None)
        crt, pem_key = self.ca_cert.with_name(f"{stem}.crt"), self.ca_cert.with_name(f"{stem}.key")
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pem_key, key)
        return crt, pem_key


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list | None = None,
    sans: list | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew between processes
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def create(folder: Path, *, serving_ips: tuple[str, ...] = (), serving_dns: tuple[str, ...] = (), keep_ca_key: bool = False) -> Pki:
    """`serving_ips`/`serving_dns`: more names for the API server's certificate (a real lab's cluster
    address and the `kubernetes` Service); `keep_ca_key`: write `ca.key` so `Pki.issue` works."""
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = _key()
    ca_name = _name("faultflow-lab-ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)

    serving_key = _key()
    serving = _cert(
        _name("kube-apiserver"),
        serving_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            *(x509.DNSName(name) for name in serving_dns),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in serving_ips),
        ],
    )
    admin_key = _key()
    admin = _cert(_name("faultflow-admin", "system:masters"), admin_key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    sa_key = _key()
    kubelet_client_key = _key()
    kubelet_client = _cert(
        _name("kube-apiserver-kubelet-client", "system:masters"),
        kubelet_client_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    kubelet_serving_key = _key()
    kubelet_serving = _cert(
        _name("kubelet"),
        kubelet_serving_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )

    pki = Pki(
        ca_cert=folder / "ca.crt",
        serving_cert=folder / "apiserver.crt",
        serving_key=folder / "apiserver.key",
        admin_cert=folder / "admin.crt",
        admin_key=folder / "admin.key",
        sa_public_key=folder / "sa.pub",
        sa_private_key=folder / "sa.key",
        kubelet_client_cert=folder / "kubelet-client.crt",
        kubelet_client_key=folder / "kubelet-client.key",
        kubelet_serving_cert=folder / "kubelet.crt",
        kubelet_serving_key=folder / "kubelet.key",
        ca_key=folder / "ca.key" if keep_ca_key else None,
    )
    if pki.ca_key is not None:
        _write_key(pki.ca_key, ca_key)
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    pki.serving_cert.write_bytes(serving.public_bytes(pem))
    _write_key(pki.serving_key, serving_key)
    pki.admin_cert.write_bytes(admin.public_bytes(pem))
    _write_key(pki.admin_key, admin_key)
    pki.sa_public_key.write_bytes(sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_key(pki.sa_private_key, sa_key)
    pki.kubelet_client_cert.write_bytes(kubelet_client.public_bytes(pem))
    _write_key(pki.kubelet_client_key, kubelet_client_key)
    pki.kubelet_serving_cert.write_bytes(kubelet_serving.public_bytes(pem))
    _write_key(pki.kubelet_serving_key, kubelet_serving_key)
    return pki
