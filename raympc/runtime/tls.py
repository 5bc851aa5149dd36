"""TLS for the party-to-party links (SPU's brpc link with mutual certificate authentication).

Two ways to get certificates:
- generated per session (`TLSConfig()`): the driver makes a throwaway CA and one certificate per
  party (ECDSA P-256, valid for a day, the party's link address in its SubjectAltName) and hands
  each party only its own key. Keys pass through Ray's object store once; see SECURITY.md.
- supplied (`TLSConfig(cert_dir=...)`): `ca.pem`, `party<R>.pem` and `party<R>.key` at that path on
  each party's node, made by the user's own PKI. Nothing secret leaves the nodes.
Both sides present and verify certificates, so a link only forms between holders of the CA's certs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field

from raympc.errors import ConfigError

CERT_LIFETIME = datetime.timedelta(days=1)


class TLSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_dir: str | None = Field(None, description="directory with ca.pem, party<R>.pem, party<R>.key on "
                                                   "every party node; default: generate per session")
    verify_depth: int = Field(1, ge=1, description="certificate chain depth checked by each side")


@dataclass(frozen=True)
class PartyCredentials:
    """What one party needs: PEM bytes (generated) or file paths on its node (supplied)."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    verify_depth: int = 1

    def install(self, directory: str) -> tuple[str, str, str]:
        """Write generated PEMs into `directory` (key readable by the owner only); return the paths."""
        if self.cert_pem is None:
            for p in (self.ca_path, self.cert_path, self.key_path):
                if not p or not os.path.isfile(p):
                    raise ConfigError(f"TLS file {p} is missing on this party's node ({os.uname().nodename})")
            return self.ca_path, self.cert_path, self.key_path  # type: ignore[return-value]
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        paths = tuple(os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem"))
        for path, data in zip(paths, (self.ca_pem, self.cert_pem, self.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)  # type: ignore[arg-type]
        return paths  # type: ignore[return-value]

    def apply(self, desc, directory: str) -> None:
        """Turn on SSL in a libspu link Desc: both directions present this party's cert and verify."""
        ca, cert, key = self.install(directory)
        desc.enable_ssl = True
        for opts in (desc.server_ssl_opts, desc.client_ssl_opts):
            opts.cert.certificate_path = cert
            opts.cert.private_key_path = key
            opts.verify.ca_file_path = ca
            opts.verify.verify_depth = self.verify_depth


def credentials(config: TLSConfig, hosts: list[str]) -> list[PartyCredentials]:
    """One PartyCredentials per party (`hosts[r]` is the address party r listens on)."""
    if config.cert_dir is not None:
        d = Path(config.cert_dir)
        return [PartyCredentials(ca_path=str(d / "ca.pem"), cert_path=str(d / f"party{r}.pem"),
                                 key_path=str(d / f"party{r}.key"), verify_depth=config.verify_depth)
                for r in range(len(hosts))]
    ca_pem, pairs = generate_session_pki(hosts)
    return [PartyCredentials(ca_pem=ca_pem, cert_pem=c, key_pem=k, verify_depth=config.verify_depth) for c, k in pairs]


def generate_session_pki(hosts: list[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A throwaway CA and one (certificate, key) per party, PEM-encoded. The CA key is discarded."""

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + CERT_LIFETIME

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raympc session"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("raympc session CA")).issuer_name(name("raympc session CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    pairs = []
    for rank, host in enumerate(hosts):
        key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
        cert = (x509.CertificateBuilder().subject_name(name(f"party{rank}")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pairs.append((cert.public_bytes(serialization.Encoding.PEM),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())))
    return ca.public_bytes(serialization.Encoding.PEM), pairs
