import pytest

from cloudgate.config.settings import GatewaySettings
from cloudgate.gateway.auth import ANONYMOUS, AuthError, KeyAuthenticator, key_id


def _scope(*headers: tuple[str, str]) -> dict:
    return {"headers": [(k.lower().encode(), v.encode()) for k, v in headers]}


def test_each_header_form_is_accepted():
    auth = KeyAuthenticator(GatewaySettings(keys=["k1", "k2"], auth_header="Proxy-Authorization"))
    assert auth.authenticate(_scope(("x-api-key", "k1"))).key_id == key_id("k1")
    assert auth.authenticate(_scope(("Authorization", "Bearer k2"))).key_id == key_id("k2")
    assert auth.authenticate(_scope(("authorization", "bearer   k2 "))).key_id == key_id("k2")
    # A cloud token in Authorization, the gateway key in the configured header.
    caller = auth.authenticate(
        _scope(("Authorization", "Bearer ya29.gcp"), ("Proxy-Authorization", "Bearer k1"))
    )
    assert caller.key_id == key_id("k1")


def test_missing_and_wrong_keys():
    auth = KeyAuthenticator(GatewaySettings(keys=["k1"]))
    with pytest.raises(AuthError, match="missing"):
        auth.authenticate(_scope(("x-other", "k1")))
    with pytest.raises(AuthError, match="invalid"):
        auth.authenticate(_scope(("x-api-key", "k1x")))
    # The configured extra header is not read when none is configured.
    with pytest.raises(AuthError, match="missing"):
        auth.authenticate(_scope(("proxy-authorization", "k1")))


def test_keyless_only_on_loopback():
    assert KeyAuthenticator(GatewaySettings(allow_keyless=True)).authenticate(_scope()) is ANONYMOUS
    with pytest.raises(ValueError, match="loopback"):
        KeyAuthenticator(GatewaySettings(allow_keyless=True, host="0.0.0.0"))
    with pytest.raises(ValueError, match="no gateway keys"):
        KeyAuthenticator(GatewaySettings())
    # With keys in the store, no configured keys is normal: every key is checked there.
    with pytest.raises(AuthError, match="missing"):
        KeyAuthenticator(GatewaySettings(), store_keys=True).authenticate(_scope())


def test_key_ids_do_not_reveal_keys():
    assert "secret" not in key_id("secret") and key_id("a") != key_id("b")


def test_match_answers_without_raising():
    auth = KeyAuthenticator(GatewaySettings(keys=["k1"]), admin_key="adm")
    assert auth.match(_scope(("x-api-key", "k1"))).key_id == key_id("k1")
    assert auth.match(_scope(("Authorization", "Bearer adm"))).key_id == "admin"
    # A key not configured here (perhaps one from the store) and no key at all: None, no error.
    assert auth.match(_scope(("x-api-key", "cg-from-the-store"))) is None
    assert auth.match(_scope()) is None
    assert KeyAuthenticator(GatewaySettings(allow_keyless=True)).match(_scope()) is ANONYMOUS
