"""The Redactor hides every secret value in a text, in each form the value takes on the way out
(as written, JSON-escaped, URL-encoded), overlapping secrets included, and never makes a secret
again out of the mask and the text around it."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medic_core.secrets.redact import MIN_LENGTH, Redactor, forms, redactable
from medic_core.settings import MASK

#: Values a secret may have: at least MIN_LENGTH characters, not only '*'; any Unicode,
#: quotes, backslashes, control characters, '%' and '+' included (they change the forms).
VALUES = st.text(min_size=MIN_LENGTH, max_size=24).filter(redactable)
SECRETS = st.lists(VALUES, min_size=1, max_size=5, unique=True)
FILLER = st.text(max_size=12)


def every_form(values: list[str]) -> set[str]:
    return {form for value in values for form in forms(value)}


@settings(max_examples=300, deadline=None)
@given(values=SECRETS, data=st.data())
def test_no_form_of_any_secret_survives_in_any_text(values: list[str], data: st.DataObject) -> None:
    pieces = data.draw(
        st.lists(st.one_of(FILLER, st.sampled_from(sorted(every_form(values)))), max_size=12)
    )
    text = "".join(pieces)
    out = Redactor(values)(text)
    for form in every_form(values):
        assert form not in out, (form, text, out)


@settings(max_examples=200, deadline=None)
@given(values=SECRETS, data=st.data())
def test_a_secret_inside_a_json_document_or_a_url_is_hidden(
    values: list[str], data: st.DataObject
) -> None:
    value = data.draw(st.sampled_from(values))
    redact = Redactor(values)
    document = json.dumps({"headers": {"Authorization": f"Bearer {value}"}, "note": "x"})
    assert value not in json.loads(redact(document))["headers"]["Authorization"]
    for encoded in (quote(value, safe=""), quote_plus(value)):
        url = f"https://hooks.example/send?token={encoded}&x=1"
        out = redact(url)
        assert encoded not in out and MASK in out


def test_overlapping_secrets_are_hidden_longest_first() -> None:
    redact = Redactor(["abcd", "abcdefgh", "cdef"])
    assert redact("xx abcdefgh yy") == f"xx {MASK} yy"
    assert "cdef" not in redact("abcdef") and "abcd" not in redact("abcdef")


def test_a_secret_the_mask_and_its_neighbours_would_spell_again_is_hidden_too() -> None:
    # Replacing "abcd" leaves "********ab", which holds "**ab": replacing repeats.
    out = Redactor(["abcd", "**ab"])("abcdab")
    assert "**ab" not in out and "abcd" not in out


def test_text_without_secrets_and_a_redactor_without_secrets_change_nothing() -> None:
    assert Redactor(["s3cr3t-value"])("nothing to hide here") == "nothing to hide here"
    assert Redactor([])("any text at all") == "any text at all"


@pytest.mark.parametrize("value", ["", "abc", "***", "****", "********"])
def test_values_that_cannot_be_redacted_safely_are_refused(value: str) -> None:
    assert not redactable(value)
    with pytest.raises(ValueError, match="at least 4 characters and not only"):
        Redactor([value])
