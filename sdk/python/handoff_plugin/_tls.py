"""go-plugin's AutoMTLS, plugin side.

The host generates a self-signed certificate and passes its PEM in
PLUGIN_CLIENT_CERT. The plugin generates its own self-signed certificate
for "localhost", returns its DER (base64 without padding) in the handshake,
serves with it while requiring the host's certificate and trusting nothing
else, and dials the host's broker services with the same identity, again
trusting only the host's certificate.
"""

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Identity:
    """The plugin's certificate and key (PEM), and the certificate's DER."""

    def __init__(self, cert_pem, key_pem, cert_der):
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.cert_der = cert_der

    def handshake_field(self):
        """The handshake's certificate field: standard base64 of the DER
        without "=" padding (go-plugin decodes it with RawStdEncoding, which
        refuses padding)."""
        return base64.b64encode(self.cert_der).decode("ascii").rstrip("=")


def generate(now=None):
    """A fresh P-256 self-signed certificate with go-plugin's shape: CN and
    DNS name localhost, a CA (the host pins it as its own root), usable for
    both server and client authentication, valid from 30 s ago."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "handoff plugin"),
        x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        cert.public_bytes(serialization.Encoding.DER),
    )


def server_credentials(grpc, ident, host_cert_pem):
    """Serves with ident, requiring a client certificate issued by (that is,
    equal to, since it is self-signed) the host's."""
    return grpc.ssl_server_credentials([(ident.key_pem, ident.cert_pem)],
                                       root_certificates=host_cert_pem, require_client_auth=True)


def channel_credentials(grpc, ident, host_cert_pem):
    """Dials the host with ident, trusting only the host's certificate."""
    return grpc.ssl_channel_credentials(root_certificates=host_cert_pem, private_key=ident.key_pem,
                                        certificate_chain=ident.cert_pem)
