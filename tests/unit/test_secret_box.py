"""The box over MEDIC_SECRET_KEY: the first key encrypts, every key decrypts; a malformed key
stops the start without ever printing the key; a token no key opens is an error that names the
secret and shows nothing of its value."""

from __future__ import annotations

import pytest

from medic_core.app import Medic
from medic_core.secrets.box import (
    Box,
    SecretKeyError,
    SecretsNotConfigured,
    UnreadableSecret,
    generate_key,
    parse_keys,
)
from medic_core.settings import Settings


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    token = Box([old]).encrypt("hunter2-password")
    both = Box([new, old])
    assert both.decrypt("DB_PASSWORD", token) == "hunter2-password"
    rotated = both.rotate("DB_PASSWORD", token)
    assert Box([new]).decrypt("DB_PASSWORD", rotated) == "hunter2-password"
    with pytest.raises(UnreadableSecret):
        Box([old]).decrypt("DB_PASSWORD", rotated)


def test_a_token_no_key_opens_names_the_secret_and_not_its_value() -> None:
    token = Box([generate_key()]).encrypt("the-value-itself")
    with pytest.raises(UnreadableSecret) as caught:
        Box([generate_key()]).decrypt("API_TOKEN", token)
    text = str(caught.value)
    assert "'API_TOKEN'" in text and "MEDIC_SECRET_KEY" in text
    assert "the-value-itself" not in text and token not in text
    assert caught.value.status == 409
    with pytest.raises(UnreadableSecret, match="API_TOKEN"):
        Box([generate_key()]).rotate("API_TOKEN", token)
    with pytest.raises(UnreadableSecret, match="ALTERED"):
        Box([generate_key()]).decrypt("ALTERED", "not-a-token-at-all")


@pytest.mark.parametrize(
    "setting",
    ["not-a-key", "c2hvcnQ=", "{good},not-a-key-but-long-enough-to-look-like-one-000000"],
)
def test_a_malformed_key_is_a_start_up_error_that_never_shows_the_key(setting: str) -> None:
    setting = setting.replace("{good}", generate_key())
    with pytest.raises(SecretKeyError) as caught:
        Box.from_setting(setting)
    text = str(caught.value)
    assert "medic secret keygen" in text
    for key in parse_keys(setting):
        assert key not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(SecretKeyError):
        Medic(Settings.load({}, secret_key=setting, database_url="sqlite:///:memory:"))


def test_no_key_means_no_box_and_a_clear_problem() -> None:
    assert Box.from_setting("") is None and Box.from_setting(" , ") is None
    problem = SecretsNotConfigured()
    assert problem.status == 409 and "medic secret keygen" in str(problem)


def test_keys_are_comma_separated_with_blanks_ignored() -> None:
    a, b = generate_key(), generate_key()
    assert parse_keys(f" {a} ,{b}, ") == [a, b]
    assert Box.from_setting(f"{a},{b}").key_count == 2  # type: ignore[union-attr]
