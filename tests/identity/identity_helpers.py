"""Helpers for identity tests: a clock that moves only when told (`ManualClock`), a service factory, and a
software WebAuthn authenticator (a fake of the device, so every verification path runs without a browser)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tianmu.core.clock import ManualClock
from tianmu.identity import IdentityService, Principal, RelyingParty
from tianmu.store.database import Store

RP = RelyingParty(id="localhost", name="Tianmu test", origin="http://localhost:8123")


DAY = 86_400
"""Seconds, for `ManualClock.advance`."""


def start_clock() -> ManualClock:
    """The tests' clock: it moves only when a test advances it."""
    return ManualClock(current=dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))


def make_service(store: Store, home: Path, clock: ManualClock, **kwargs: Any) -> IdentityService:
    return IdentityService(store, home=home, kek=b"k" * 16, rp=RP, clock=clock, **kwargs)


def login_principal(svc: IdentityService, tenant: str, username: str, password: str) -> Principal:
    step = svc.password_login(tenant, username, password, client="198.51.100.7")
    assert step.done and step.session_secret
    return svc.session_principal(step.session_secret)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """A platform authenticator in software: ES256 keys, resident credentials, a signature counter, and
    the user-verification flag under the test's control (the biometric stand-in)."""

    origin: str = RP.origin
    rp_id: str = RP.id
    user_verified: bool = True
    counter: int = 0
    credentials: dict[bytes, tuple[ec.EllipticCurvePrivateKey, bytes]] = field(default_factory=dict)

    def _flags(self, attested: bool) -> int:
        return 0x01 | (0x04 if self.user_verified else 0) | (0x40 if attested else 0)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def create(self, options_json: str) -> dict[str, Any]:
        options = json.loads(options_json)
        key = ec.generate_private_key(ec.SECP256R1())
        cred_id = os.urandom(16)
        self.credentials[cred_id] = (key, unb64u(options["user"]["id"]))
        numbers = key.public_key().public_numbers()
        cose = cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags(True)])
            + struct.pack(">I", self.counter)
            + bytes(16)
            + struct.pack(">H", len(cred_id))
            + cred_id
            + cose
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"])
        return {
            "id": b64u(cred_id),
            "rawId": b64u(cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(client_data),
                "attestationObject": b64u(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(self, options_json: str, cred_id: bytes | None = None) -> dict[str, Any]:
        options = json.loads(options_json)
        allowed = [unb64u(c["id"]) for c in options.get("allowCredentials", [])]
        cred_id = cred_id or (allowed[0] if allowed else next(iter(self.credentials)))
        key, user_handle = self.credentials[cred_id]
        self.counter += 1
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags(False)])
            + struct.pack(">I", self.counter)
        )
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64u(cred_id),
            "rawId": b64u(cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(client_data),
                "authenticatorData": b64u(auth_data),
                "signature": b64u(signature),
                "userHandle": b64u(user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
