"""`tianmu crypto`: SM3 digests, SM4-GCM files and SM2 keys, signatures and encryption, interoperable with
the `openssl` command line (signatures are DER with the default ID 1234567812345678; keys PKCS#8 PEM)."""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from tianmu.cli.console import ExitCode, err_console, out_console
from tianmu.cli.main import cli_errors
from tianmu.core.errors import InputError
from tianmu.gmcrypto import sm2, sm3, sm4
from tianmu.gmcrypto.errors import IntegrityError
from tianmu.gmcrypto.x509 import ChainError, load_certificates, read_public_key, verify_chain

__all__ = ["read_sm4_key", "register", "write_private"]


KeyFile = Annotated[Path, typer.Option("--key-file", help="16-byte key: raw, 32 hex digits or base64.")]
In = Annotated[Path, typer.Option("--in", help="Input file.")]
Out = Annotated[Path, typer.Option("--out", help="Output file.")]
Aad = Annotated[str, typer.Option("--aad", help="Additional authenticated data (must match on decrypt).")]
Ident = Annotated[str, typer.Option("--id", help="Distinguishing ID in the Z value.")]


def _read(path: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (0600 from the start, not chmod-ed afterwards)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", str(path)) from exc


def _write(path: Path, data: bytes) -> None:
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", str(path)) from exc


def read_sm4_key(path: Path) -> bytes:
    """A 16-byte SM4 key file: 16 raw bytes, or 32 hex digits, or base64 (a trailing newline is fine)."""
    data = _read(path)
    if len(data) == sm4.KEY_SIZE:
        return data
    text = data.strip()
    try:
        if len(text) == 2 * sm4.KEY_SIZE:
            return bytes.fromhex(text.decode("ascii"))
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != sm4.KEY_SIZE:
        raise InputError("expected a 16-byte SM4 key (raw, 32 hex digits or base64)", str(path))
    return raw


def _atomic_output(out: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else ".")


def register(app: typer.Typer) -> None:
    crypto = typer.Typer(
        help="Commercial cryptography: SM3 digests, SM4-GCM files, SM2 keys and signatures.",
        no_args_is_help=True,
    )
    app.add_typer(crypto, name="crypto")

    @crypto.command("sm3")
    @cli_errors
    def sm3_command(
        files: Annotated[list[Path], typer.Argument(help="Files to hash ('-' for standard input).")],
    ) -> None:
        """Print the SM3 digest of each file, then its name (like sha256sum)."""
        failed = False
        for path in files:
            try:
                value = sm3.digest_stream(sys.stdin.buffer) if str(path) == "-" else sm3.digest_file(path)
            except OSError as exc:
                err_console.print(f"[bold red]error:[/] {path}: {exc.strerror}", markup=True, highlight=False)
                failed = True
                continue
            out_console.file.write(f"{value.hex()}  {path}\n")
        if failed:
            raise typer.Exit(ExitCode.USAGE)

    sm4_app = typer.Typer(help="SM4-GCM file encryption (nonce ‖ ciphertext ‖ tag).", no_args_is_help=True)
    crypto.add_typer(sm4_app, name="sm4")

    @sm4_app.command("keygen")
    @cli_errors
    def sm4_keygen(out: Out) -> None:
        """Write a new random SM4 key (hex, mode 0600)."""
        write_private(out, os.urandom(sm4.KEY_SIZE).hex().encode("ascii") + b"\n")

    @sm4_app.command("encrypt")
    @cli_errors
    def sm4_encrypt(key_file: KeyFile, in_: In, out: Out, aad: Aad = "") -> None:
        """Encrypt and authenticate a file of any size with SM4-GCM."""
        key = read_sm4_key(key_file)
        try:
            with in_.open("rb") as src, out.open("wb") as dst:
                sm4.seal_stream(key, src, dst, aad=aad.encode("utf-8"))
        except OSError as exc:
            raise InputError(f"{exc.strerror}", str(exc.filename or in_)) from exc

    @sm4_app.command("decrypt")
    @cli_errors
    def sm4_decrypt(key_file: KeyFile, in_: In, out: Out, aad: Aad = "") -> None:
        """Check and decrypt; nothing is written unless the whole file authenticates."""
        key = read_sm4_key(key_file)
        try:
            size = in_.stat().st_size
            fd, tmp = _atomic_output(out)
            try:
                with in_.open("rb") as src, os.fdopen(fd, "wb") as dst:
                    sm4.open_stream(key, src, dst, size, aad=aad.encode("utf-8"))
                os.replace(tmp, out)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise InputError(f"{exc.strerror}", str(exc.filename or in_)) from exc
        except IntegrityError as exc:
            raise InputError(str(exc), str(in_)) from exc

    sm2_app = typer.Typer(
        help="SM2 keys, signatures (SM3withSM2) and public-key encryption.", no_args_is_help=True
    )
    crypto.add_typer(sm2_app, name="sm2")

    @sm2_app.command("keygen")
    @cli_errors
    def sm2_keygen(
        out: Annotated[Path, typer.Option("--out", help="Private key, PKCS#8 PEM (mode 0600).")],
        pub_out: Annotated[
            Path | None, typer.Option("--pub-out", help="Public key, SubjectPublicKeyInfo PEM.")
        ] = None,
    ) -> None:
        """Generate an SM2 key pair."""
        key = sm2.generate_key()
        write_private(out, key.to_pem())
        if pub_out is not None:
            _write(pub_out, key.public_key.to_pem())

    @sm2_app.command("sign")
    @cli_errors
    def sm2_sign(
        key: Annotated[Path, typer.Option("--key", help="Private key (PEM or DER).")],
        in_: In,
        out: Out,
        ident: Ident = sm2.DEFAULT_ID.decode(),
    ) -> None:
        """DER signature over the file, verifiable by `openssl dgst -sm3 -sigopt distid:ID -verify`."""
        private = sm2.read_private_key(key)
        _write(out, sm2.sign(private, _read(in_), ident=ident.encode("utf-8")))

    @sm2_app.command("verify")
    @cli_errors
    def sm2_verify(
        pub: Annotated[
            Path, typer.Option("--pub", help="Public key, private key or certificate (PEM or DER).")
        ],
        in_: In,
        sig: Annotated[Path, typer.Option("--sig", help="DER (or raw r‖s) signature.")],
        ident: Ident = sm2.DEFAULT_ID.decode(),
    ) -> None:
        """Exit 0 and print "Verified OK" when the signature is good; exit 1 otherwise."""
        public = read_public_key(pub)
        if sm2.verify(public, _read(in_), _read(sig), ident=ident.encode("utf-8")):
            out_console.print("Verified OK")
            return
        err_console.print("Verification failure")
        raise typer.Exit(ExitCode.FINDINGS)

    @sm2_app.command("encrypt")
    @cli_errors
    def sm2_encrypt(
        pub: Annotated[Path, typer.Option("--pub", help="Recipient's public key or certificate.")],
        in_: In,
        out: Out,
        der: Annotated[
            bool, typer.Option("--der", help="GM/T 0009 DER (what `openssl pkeyutl` reads).")
        ] = False,
        order: Annotated[
            str, typer.Option("--order", help="c1c3c2 (GB/T 32918-2016) or c1c2c3 (older).")
        ] = "c1c3c2",
    ) -> None:
        """SM2 public-key encryption of a (small) file."""
        if order not in ("c1c3c2", "c1c2c3"):
            raise InputError("--order must be c1c3c2 or c1c2c3")
        _write(out, sm2.encrypt(read_public_key(pub), _read(in_), order=order, der=der))  # type: ignore[arg-type]

    @sm2_app.command("decrypt")
    @cli_errors
    def sm2_decrypt(
        key: Annotated[Path, typer.Option("--key", help="Private key (PEM or DER).")], in_: In, out: Out
    ) -> None:
        """Decrypt C1C3C2, C1C2C3 or DER ciphertext."""
        try:
            _write(out, sm2.decrypt(sm2.read_private_key(key), _read(in_)))
        except IntegrityError as exc:
            raise InputError(str(exc), str(in_)) from exc

    cert_app = typer.Typer(help="X.509 certificates with SM2 keys (SM3withSM2).", no_args_is_help=True)
    crypto.add_typer(cert_app, name="cert")

    @cert_app.command("show")
    @cli_errors
    def cert_show(
        path: Annotated[Path, typer.Argument(help="Certificate(s), PEM or DER.")],
        json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Print subject, issuer, validity, serial and SM3 fingerprint of each certificate."""
        rows = [
            {
                "subject": c.subject,
                "issuer": c.issuer,
                "serial": format(c.serial_number, "x"),
                "not_before": c.not_before.isoformat(),
                "not_after": c.not_after.isoformat(),
                "ca": c.is_ca,
                "fingerprint_sm3": c.fingerprint(),
                "public_key_sm3": c.public_key.fingerprint(),
            }
            for c in load_certificates(_read(path), source=str(path))
        ]
        if json:
            out_console.file.write(jsonlib.dumps(rows, indent=2) + "\n")
            return
        for row in rows:
            out_console.print("\n".join(f"{key:>16}: {value}" for key, value in row.items()) + "\n")

    @cert_app.command("verify")
    @cli_errors
    def cert_verify(
        path: Annotated[
            Path, typer.Argument(help="Certificate to check; intermediates may follow in the file.")
        ],
        ca: Annotated[Path, typer.Option("--ca", help="Trusted CA certificate(s), PEM.")],
    ) -> None:
        """Check the chain to a trusted CA (names, validity, CA flags, SM3withSM2); exit 1 if it fails."""
        chain = load_certificates(_read(path), source=str(path))
        trusted = load_certificates(_read(ca), source=str(ca))
        try:
            found = verify_chain(chain[0], chain[1:], trusted)
        except ChainError as exc:
            err_console.print(f"{path}: verification failed: {exc}")
            raise typer.Exit(ExitCode.FINDINGS) from exc
        out_console.print(f"{path}: OK (" + " → ".join(c.subject for c in found) + ")")
