"""Fixture ``dovecot``: a real Dovecot IMAP server on 127.0.0.1, one per test.

It starts in about 0.05 s and stops in at most about 0.5 s (see ``Dovecot.stop``).
``start_dovecot()`` gives a started server to code that manages it itself.

The server's configuration, passwd-file and Maildir storage live in a fresh directory
under the system temp dir (not ``tmp_path``: when the tests run as root, pytest's base
temp dir is private to root, and Dovecot's processes run as ``nobody``). Dovecot refuses
to run mail processes as root, so as root the whole server runs as ``nobody``/``nogroup``
(``subprocess.Popen(user=..., group=...)``); otherwise as the current user. Every one of
its users (internal, login, mail) is that same account, with no chroot: the setup for
running Dovecot unprivileged.

Plaintext login without TLS is allowed (only 127.0.0.1 listens), failed logins are not
delayed (``auth_failure_delay = 0`` and no anvil auth penalty), ``Sent`` and ``Drafts`` carry their SPECIAL-USE
flags, and Dovecot's default capabilities include CONDSTORE, QRESYNC and IDLE. It starts
in well under a second; ``stop()`` waits until all its processes are gone.

The binary comes from the Debian package ``dovecot-imapd`` (``.ci/run`` installs it).
Without it the tests skip, or fail when ``CI=true``.

The ``Dovecot`` object has ``.host``, ``.port``, ``.username``, ``.password``,
``.log_path``, ``.client(username=None, password=None)`` (a logged-in ``IMAPClient``
to deliver mail with APPEND, as the manager's other mail client would),
``.spare_user()``, ``.add_user()``, ``.stop()`` and ``.cleanup()``.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from assistant.entrypoints.embedded import free_port
from tests.support.services import unavailable

USERNAME = "manager@example.test"
PASSWORD = "manager-secret"
START_TIMEOUT = 10.0
SPARE_USERS = 5  # more logins on the same server (its passwd-file is written at start)

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = exec-assistant-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:{root}/mail/%n
mail_fsync = never
imap_idle_notify_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
}}
"""


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class Dovecot:
    """One Dovecot instance with its own directory; call ``start()`` then ``stop()``."""

    host = "127.0.0.1"

    def __init__(self, binary: str, *, tls: bool = False) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.port = free_port()
        self.tls = tls
        self.imaps_port = free_port() if tls else 0
        self._ca_pem = b""
        self.username = USERNAME
        self.password = PASSWORD
        self.log_path = self.root / "dovecot.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.users: dict[str, str] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("nobody")
            self._run_as: tuple[str, int, int] | None = ("nobody", account.pw_uid, account.pw_gid)
        else:
            self._run_as = None

    def start(self) -> Dovecot:
        if self._run_as is not None:
            user, uid, gid = self._run_as
        else:
            uid, gid = os.getuid(), os.getgid()
            user = pwd.getpwuid(uid).pw_name
        group = _group_name(gid)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        ssl_setting = "ssl = no"
        if self.tls:
            ca_pem, cert_pem, key_pem = _certificates(self.host)
            self._ca_pem = ca_pem
            (self.root / "cert.pem").write_bytes(cert_pem)
            (self.root / "key.pem").write_bytes(key_pem)
            ssl_setting = (
                f"ssl = yes\nssl_cert = <{self.root}/cert.pem\nssl_key = <{self.root}/key.pem"
            )
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                imaps_port=self.imaps_port,
                ssl=ssl_setting,
                user=user,
                group=group,
                uid=uid,
                gid=gid,
            )
        )
        self.add_user(self.username, self.password)
        for n in range(SPARE_USERS):
            self.add_user(f"user{n}@example.test", f"password-{n}")
        self._spare = [f"user{n}@example.test" for n in range(SPARE_USERS)]
        if self._run_as is not None:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, uid, gid)
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=uid if self._run_as else None,
            group=gid if self._run_as else None,
            extra_groups=[] if self._run_as else None,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"dovecot exited at start: {err}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"dovecot did not listen on port {self.port}\n{self.log()}")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (``tls=True`` only)."""
        assert self.tls, "started without TLS"
        return ssl.create_default_context(cadata=self._ca_pem.decode())

    def spare_user(self) -> tuple[str, str]:
        """A login nobody used yet (an empty mailbox): username and password."""
        username = self._spare.pop(0)
        return username, self.users[username]

    def add_user(self, username: str, password: str) -> None:
        """Add (or change) a login. Dovecot re-reads the passwd-file when it changes,
        but may take a second to notice: prefer ``spare_user()`` in tests."""
        self.users[username] = password
        fresh = self.root / "passwd.new"
        fresh.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        if self._run_as is not None:
            os.chown(fresh, self._run_as[1], self._run_as[2])
        fresh.replace(self.root / "passwd")  # a new inode: Dovecot reloads it

    def client(self, username: str | None = None, password: str | None = None) -> IMAPClient:
        """A logged-in client of our own (the manager's other mail program)."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=5)
        client.login(username or self.username, password or self.password)
        return client

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server and every process it started, and wait until they are gone.

        The whole process group gets SIGTERM (Dovecot's mail processes outlive a master
        stopped alone); whatever is left after half a second, typically the master
        waiting out its own one-second (sometimes six) shutdown timer, gets SIGKILL.
        """
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid  # start_new_session: the master leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 0.5
        while (process.poll() is None or _group_alive(group)) and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.poll() is None or _group_alive(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _certificates(host: str) -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and a server certificate for ``host`` signed by it (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def build(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        build("exec-assistant test CA", "exec-assistant test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        build(host, "exec-assistant test CA", key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def start_dovecot(*, tls: bool = False) -> Dovecot:
    """A started server (the caller cleans it up); skips when Dovecot is absent.

    With ``tls`` it also listens for IMAPS on ``.imaps_port`` and offers STARTTLS, with a
    certificate from a throwaway CA that ``.ssl_context()`` trusts."""
    binary = dovecot_binary()
    if binary is None:
        unavailable("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot(binary, tls=tls)
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A server of its own for one test, stopped and removed afterwards."""
    server = start_dovecot()
    try:
        yield server
    finally:
        server.cleanup()
