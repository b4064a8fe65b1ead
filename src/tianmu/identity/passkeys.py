"""WebAuthn passkeys through py_webauthn, always with user verification required.

User verification (UV) is how fingerprint and face recognition reach the web: the authenticator (Touch ID,
Windows Hello, an Android phone, a FIDO2 key with a fingerprint reader) checks the person locally and sets
the UV flag in the data it signs. The server verifies the signature, the UV flag, the challenge, the origin
and the signature counter; biometric data never leaves the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tianmu.identity.errors import AuthenticationError

__all__ = [
    "RegisteredPasskey",
    "authentication_options",
    "credential_id",
    "registration_options",
    "user_handle",
    "verify_authentication",
    "verify_registration",
]


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    id: str
    """base64url credential id"""
    public_key: str
    """base64url COSE public key"""
    sign_count: int
    backed_up: bool
    transports: list[str]


def _descriptors(ids: list[str]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(i)) for i in ids]


def registration_options(
    *, rp_id: str, rp_name: str, user_id: str, username: str, display_name: str, exclude: list[str]
) -> tuple[str, bytes]:
    """(options JSON for navigator.credentials.create, the challenge to remember)."""
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id.encode("utf-8"),
        user_name=username,
        user_display_name=display_name or username,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude),
    )
    return options_to_json(options), options.challenge


def verify_registration(
    credential: str | dict[str, Any], *, challenge: bytes, rp_id: str, origin: str
) -> RegisteredPasskey:
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationError(
            "the passkey could not be registered", reason=f"passkey registration: {exc}"
        ) from exc
    data = credential if isinstance(credential, dict) else json.loads(credential)
    transports = [str(t) for t in data.get("response", {}).get("transports", []) or []]
    valid = {t.value for t in AuthenticatorTransport}
    return RegisteredPasskey(
        id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        backed_up=bool(verified.credential_backed_up),
        transports=[t for t in transports if t in valid],
    )


def authentication_options(*, rp_id: str, allow: list[str]) -> tuple[str, bytes]:
    """Options for navigator.credentials.get; an empty `allow` lets the browser offer any discoverable
    passkey for this site (usernameless sign-in)."""
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options), options.challenge


def credential_id(credential: str | dict[str, Any]) -> str:
    """The base64url credential id of an assertion, to find the stored passkey."""
    try:
        data = credential if isinstance(credential, dict) else json.loads(credential)
        raw = data.get("rawId") or data["id"]
        return bytes_to_base64url(base64url_to_bytes(str(raw)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuthenticationError("malformed passkey response", reason=f"passkey: {exc}") from exc


def user_handle(credential: str | dict[str, Any]) -> str | None:
    """The user id the authenticator says the passkey belongs to (absent for non-discoverable ones)."""
    try:
        data = credential if isinstance(credential, dict) else json.loads(credential)
        handle = (data.get("response") or {}).get("userHandle")
        return base64url_to_bytes(str(handle)).decode("utf-8", "replace") if handle else None
    except (ValueError, TypeError, AttributeError) as exc:
        raise AuthenticationError("malformed passkey response", reason=f"passkey user handle: {exc}") from exc


def verify_authentication(
    credential: str | dict[str, Any],
    *,
    challenge: bytes,
    rp_id: str,
    origin: str,
    public_key: str,
    sign_count: int,
) -> int:
    """Check an assertion (signature, challenge, origin, UV flag, counter); returns the new sign count.

    py_webauthn refuses a counter that did not grow when either side has one, which is how a cloned
    authenticator or a replayed assertion shows itself.
    """
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=base64url_to_bytes(public_key),
            credential_current_sign_count=sign_count,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationError("the passkey was not accepted", reason=f"passkey: {exc}") from exc
    return int(verified.new_sign_count)
