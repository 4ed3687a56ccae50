"""The cluster's PKI, generated in Python with `cryptography`: one CA, the API server's serving
certificate, client certificates for each identity, and the service-account signing key.

Keys are ECDSA P-256 (fast to make, accepted by every component; service-account tokens are then
signed ES256). Identities follow Kubernetes' built-in RBAC bindings: the admin and kwok are in
`system:masters`; kube-controller-manager and kube-scheduler use the user names their default
ClusterRoleBindings expect. `ensure_pki` only creates what is missing, so `up` after `down` keeps
the same CA and kubeconfigs stay valid, with one exception: the API server's certificate is issued
again when its addresses do not cover the ones asked for (a state folder first used on loopback,
then with `--real-node` on the bridge), when another CA signed it, or when it is about to expire;
otherwise every client would fail TLS and `up` would wait out its timeout (issue 11).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate: file stem, user name (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "modelapp-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
KWOK = ClientIdentity("kwok", "kwok", ("system:masters",))
#: How the API server logs in to a kubelet (logs, exec, port-forward); the kubelet authorizes it by webhook.
APISERVER_KUBELET_CLIENT = ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                          ("system:masters",))  # fmt: skip
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK, APISERVER_KUBELET_CLIENT)
FRONT_PROXY_CLIENT = "front-proxy-client"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def make_ca(common_name: str, *, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that signs every other certificate of the cluster."""
    key = new_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, common_name: str, now: dt.datetime,
          organizations: tuple[str, ...] = (), dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = (),
          server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA: a server certificate (with SANs) or a client one."""
    key = new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def apiserver_names(service_ip: str, advertise_address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS and IP SANs of the API server: loopback, the `kubernetes` Service names and its cluster IP."""
    dns = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local")
    ips = tuple(dict.fromkeys(("127.0.0.1", service_ip, advertise_address)))
    return dns, ips


def missing_names(cert: x509.Certificate, *, dns: tuple[str, ...], ips: tuple[str, ...]) -> list[str]:
    """The DNS names and IP addresses of `dns` and `ips` that `cert`'s SANs do not cover."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [*dns, *ips]
    have_dns = set(sans.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return [n for n in dns if n not in have_dns] + [ip for ip in ips if str(ipaddress.ip_address(ip)) not in have_ips]


def reissue_reason(cert: x509.Certificate, ca_cert: x509.Certificate, *, dns: tuple[str, ...],
                   ips: tuple[str, ...], now: dt.datetime) -> str | None:
    """Why a server certificate on disk can no longer serve (None when it can): pure, for `ensure_pki`."""
    missing = missing_names(cert, dns=dns, ips=ips)
    if missing:
        return f"it does not cover {', '.join(missing)}"
    if cert.issuer != ca_cert.subject:
        return "another CA signed it"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the cluster CA's signature on it does not verify"
    if cert.not_valid_after_utc - now < dt.timedelta(days=7):
        return f"it expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _ensure_leaf(pki_dir: Path, stem: str,
                 make: Callable[[], tuple[x509.Certificate, ec.EllipticCurvePrivateKey]]) -> None:
    crt, key_file = pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key"
    if crt.exists() and key_file.exists():
        return
    cert, key = make()
    _write(key_file, key_pem(key), private=True)
    _write(crt, cert_pem(cert))


def _ensure_front_proxy(pki_dir: Path, now: dt.datetime) -> None:
    """A second CA for the aggregation layer: the API server proves itself to extension API servers
    with `front-proxy-client`, which they trust through `requestheader-client-ca-file`."""
    crt, key_file = pki_dir / "front-proxy-ca.crt", pki_dir / "front-proxy-ca.key"
    if not (crt.exists() and key_file.exists()):
        cert, key = make_ca("modelapp-front-proxy-ca", now=now)
        _write(key_file, key_pem(key), private=True)
        _write(crt, cert_pem(cert))
    ca_cert = x509.load_pem_x509_certificate(crt.read_bytes())
    ca_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_file} is not an ECDSA key")
    _ensure_leaf(pki_dir, "front-proxy-client",
                 functools.partial(issue, ca_cert, ca_key, common_name=FRONT_PROXY_CLIENT, now=now))


def ensure_pki(pki_dir: Path, *, service_ip: str, advertise_address: str,
               bind_address: str | None = None) -> list[str]:
    """Create whatever part of the PKI is missing under `pki_dir`; existing files are kept.

    Files: ca.{crt,key}, apiserver.{crt,key}, <client>.{crt,key} for each of CLIENTS, sa.{key,pub},
    front-proxy-ca.{crt,key} and front-proxy-client.{crt,key}. The API server's certificate is
    replaced when `reissue_reason` finds one; returns one line per replaced file, for the report.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_crt, ca_key_path = pki_dir / "ca.crt", pki_dir / "ca.key"
    if not (ca_crt.exists() and ca_key_path.exists()):
        cert, key = make_ca("modelapp-local-ca", now=now)
        _write(ca_key_path, key_pem(key), private=True)
        _write(ca_crt, cert_pem(cert))
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key_path} is not an ECDSA key")
    dns, ips = apiserver_names(service_ip, advertise_address)
    if bind_address is not None and bind_address not in ips:
        ips = (*ips, bind_address)
    replaced = []
    server_crt = pki_dir / "apiserver.crt"
    if server_crt.exists() and (pki_dir / "apiserver.key").exists():
        reason = reissue_reason(x509.load_pem_x509_certificate(server_crt.read_bytes()), ca_cert, dns=dns, ips=ips,
                                now=now)
        if reason:
            server_crt.unlink()
            replaced.append(f"the API server's certificate was issued again: {reason}")
    _ensure_leaf(pki_dir, "apiserver", lambda: issue(ca_cert, loaded, common_name="kube-apiserver", now=now,
                                                     dns_names=dns, ips=ips, server=True))
    for client in CLIENTS:
        _ensure_leaf(pki_dir, client.stem, functools.partial(issue, ca_cert, loaded, common_name=client.user,
                                                             now=now, organizations=client.groups))
    _ensure_front_proxy(pki_dir, now)
    sa_key = pki_dir / "sa.key"
    if not sa_key.exists():
        key = new_key()
        _write(sa_key, key_pem(key), private=True)
        _write(pki_dir / "sa.pub", public_pem(key))
    return replaced
