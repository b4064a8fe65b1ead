"""The small API the rest of Tianmu calls is what we mean it to be, and keeps its signatures."""

from __future__ import annotations

import inspect

import tianmu.gmcrypto as gm
import tianmu.identity as identity
import tianmu.service as service


def test_gmcrypto_surface() -> None:
    for name in gm.__all__:
        assert getattr(gm, name) is not None, name
    assert {"digest", "seal", "open", "master_key", "sign", "verify", "encrypt", "decrypt"} <= set(gm.__all__)
    seal, open_ = inspect.signature(gm.seal), inspect.signature(gm.open)
    assert (
        list(seal.parameters) == ["key", "plaintext", "aad"]
        and seal.parameters["aad"].kind.name == "KEYWORD_ONLY"
    )
    assert (
        list(open_.parameters) == ["key", "sealed", "aad"]
        and open_.parameters["aad"].kind.name == "KEYWORD_ONLY"
    )
    assert next(iter(inspect.signature(gm.master_key).parameters)) == "home"
    assert issubclass(gm.IntegrityError, gm.CryptoError)


def test_identity_and_service_surface() -> None:
    for module in (identity, service):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
    assert "create_app" in service.__all__ and "IdentityService" in identity.__all__
