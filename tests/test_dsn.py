"""DSN parsing: scheme, credentials, hosts, path, options, and never showing a password."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger_core import ConfigurationError, Dsn, Messenger
from messenger_core.config import TransportConfig
from messenger_core.dsn import DsnHost, mask_dsn


def test_a_full_dsn() -> None:
    dsn = Dsn.parse("redis://app:s3cret@cache.local:6380/messages?consumer=w1&auto_setup=false")

    assert dsn.scheme == "redis"
    assert dsn.variant is None
    assert dsn.full_scheme == "redis"
    assert dsn.user == "app"
    assert dsn.password == "s3cret"
    assert dsn.hosts == (DsnHost("cache.local", 6380),)
    assert dsn.host == "cache.local"
    assert dsn.port == 6380
    assert dsn.path == "/messages"
    assert dsn.options == {"consumer": "w1", "auto_setup": "false"}


def test_scheme_and_variant_are_lower_cased() -> None:
    dsn = Dsn.parse("MySQL+PyMySQL://root@db/test")

    assert dsn.scheme == "mysql"
    assert dsn.variant == "pymysql"
    assert dsn.full_scheme == "mysql+pymysql"
    assert dsn.user == "root"
    assert dsn.password is None
    assert dsn.path == "/test"


def test_schemes_with_dashes_and_no_authority() -> None:
    assert Dsn.parse("in-memory://").scheme == "in-memory"
    assert Dsn.parse("sync://").hosts == ()
    sqlite = Dsn.parse("sqlite:///var/messenger.db?queue_name=async")
    assert sqlite.scheme == "sqlite"
    assert sqlite.hosts == ()
    assert sqlite.host is None
    assert sqlite.port is None
    assert sqlite.path == "/var/messenger.db"
    assert sqlite.options == {"queue_name": "async"}


def test_credentials_are_percent_decoded() -> None:
    dsn = Dsn.parse("amqp://us%40er:p%40ss%3Aw%2Frd%3F%23@rabbit/%2f")

    assert dsn.user == "us@er"
    assert dsn.password == "p@ss:w/rd?#"
    assert dsn.host == "rabbit"
    assert dsn.path == "//"  # the AMQP default vhost, percent-decoded


def test_an_unencoded_at_sign_in_the_password_still_parses() -> None:
    dsn = Dsn.parse("redis://user:p@ss@cache:6379")

    assert dsn.password == "p@ss"
    assert dsn.host == "cache"
    assert "ss@" not in str(dsn)


def test_a_user_without_password_and_an_empty_password() -> None:
    assert Dsn.parse("redis://user@h").password is None
    assert Dsn.parse("redis://user:@h").password == ""
    assert Dsn.parse("redis://:secret@h").user is None
    assert Dsn.parse("redis://:secret@h").password == "secret"


def test_the_password_is_masked_in_str_and_repr() -> None:
    dsn = Dsn.parse("redis://app:s3cret@cache:6379/messages?x=1")

    assert str(dsn) == "redis://app:***@cache:6379/messages?x=1"
    assert repr(dsn) == "Dsn('redis://app:***@cache:6379/messages?x=1')"
    assert "s3cret" not in repr(dsn)
    assert "s3cret" not in f"{dsn!s} {dsn!r} {[dsn]} {dsn.hosts}"
    assert dsn.to_url(mask_password=False) == "redis://app:s3cret@cache:6379/messages?x=1"


def test_the_unmasked_url_round_trips_encoded_credentials() -> None:
    original = Dsn.parse("amqp://us%40er:p%40ss%2Fw@rabbit:5672/vhost?heartbeat=30")

    again = Dsn.parse(original.to_url(mask_password=False))

    assert again == original


def test_several_hosts() -> None:
    dsn = Dsn.parse("redis+sentinel://:pw@s1:26379,s2,s3:26380/mymaster")

    assert dsn.variant == "sentinel"
    assert dsn.hosts == (DsnHost("s1", 26379), DsnHost("s2"), DsnHost("s3", 26380))
    assert dsn.host == "s1"
    assert dsn.port == 26379
    assert str(dsn) == "redis+sentinel://:***@s1:26379,s2,s3:26380/mymaster"


def test_ipv6_hosts() -> None:
    dsn = Dsn.parse("amqp://guest:guest@[::1]:5672,[fe80::1]/vhost")

    assert dsn.hosts == (DsnHost("::1", 5672), DsnHost("fe80::1"))
    assert str(dsn.hosts[0]) == "[::1]:5672"
    assert str(dsn) == "amqp://guest:***@[::1]:5672,[fe80::1]/vhost"


@pytest.mark.parametrize(("port", "expected"), [("1", 1), ("65535", 65535), ("06379", 6379)])
def test_valid_ports(port: str, expected: int) -> None:
    assert Dsn.parse(f"redis://h:{port}").port == expected


def test_query_options_are_percent_decoded_and_blank_values_kept() -> None:
    dsn = Dsn.parse("redis://h/s?group=a%20b&empty=&plus=a+b")

    assert dsn.options == {"group": "a b", "empty": "", "plus": "a b"}


def test_explicit_options_override_the_query() -> None:
    dsn = Dsn.parse("redis://h/s?consumer=w1&batch=10")

    merged = dsn.with_options({"batch": 50, "extra": True})

    assert merged == {"consumer": "w1", "batch": 50, "extra": True}
    assert dsn.options == {"consumer": "w1", "batch": "10"}  # unchanged


def test_parsed_dsns_are_values() -> None:
    assert Dsn.parse("redis://h:1/x?a=1") == Dsn.parse("redis://h:1/x?a=1")
    assert Dsn.parse("redis://h:1/x?a=1") != Dsn.parse("redis://h:1/x?a=2")


# -- malformed DSNs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "non-empty string"),
        ("   ", "non-empty string"),
        ("localhost:6379", "expected scheme://"),
        ("user:s3cret@localhost", "expected scheme://"),
        ("redis:/user:s3cret@host", "expected scheme://"),
        ("redis://user:s3cret@host:notaport", "not a number from 1 to 65535"),
        ("redis://user:s3cret@host:0", "not a number from 1 to 65535"),
        ("redis://user:s3cret@host:65536", "not a number from 1 to 65535"),
        ("redis://user:s3cret@host:-1", "not a number from 1 to 65535"),
        ("redis://user:s3cret@:6379", "empty host"),
        ("redis://user:s3cret@[::1", "malformed DSN"),
        ("redis://user:s3cret@[::1]x", "bad host"),
        ("redis://user:s3cret@host/q?novalue", "name=value pairs"),
        ("redis://user:s3cret@host/q?a=1&&b", "name=value pairs"),
        ("redis://user:s3c?ret@host", "malformed DSN"),
        ("redis://user:s3c#ret@host", "malformed DSN"),
        ("redis://user:s3c/ret@host", "malformed DSN"),
        ("redis://user:s3c@ret@host:99999", "not a number from 1 to 65535"),
    ],
)
def test_a_malformed_dsn_is_a_clear_error_that_never_shows_the_password(
    text: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Dsn.parse(text)

    message = str(caught.value)
    assert reason in message
    for fragment in ("s3cret", "s3c", "ret@"):
        assert fragment not in message


def test_a_dsn_that_is_not_a_string() -> None:
    with pytest.raises(ConfigurationError, match="non-empty string"):
        Dsn.parse(None)  # type: ignore[arg-type]


def test_mask_dsn_in_free_text() -> None:
    text = "cannot reach redis://app:s3cret@cache:6379/x or 'amqp://guest:p@ss@rabbit/%2f'"

    masked = mask_dsn(text)

    assert masked == "cannot reach redis://app:***@cache:6379/x or 'amqp://guest:***@rabbit/%2f'"
    assert mask_dsn("sqlite:///var/db and redis://cache:6379/x?a=b") == (
        "sqlite:///var/db and redis://cache:6379/x?a=b"
    )


def test_a_transport_with_a_malformed_dsn_names_the_transport_and_masks_the_password() -> None:
    messenger = Messenger(
        {"transports": {"async": "redis://user:s3cret@cache:99999"}}, autoload=False
    )

    with pytest.raises(ConfigurationError) as caught:
        messenger.get_transport("async")

    message = str(caught.value)
    assert message.startswith("transport 'async': malformed DSN")
    assert "s3cret" not in message


# -- passwords with special characters (issue 9) ------------------------------------------------


def test_an_unencoded_slash_and_at_in_a_password_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Dsn.parse("postgresql://rel@x/Pw@127.0.0.1/test")

    message = str(caught.value)
    assert "percent-encode" in message
    assert "%40" in message
    for fragment in ("rel", "x/P", "Pw"):
        assert fragment not in message
    assert "127.0.0.1/test" in message  # what can be shown is shown


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://rel:x/Pw@127.0.0.1/test",
        "postgresql://rel:a?b@127.0.0.1/test",
        "postgresql://rel:a#b@127.0.0.1/test",
        "redis://host/stream@other",
        "postgresql://rel:a b@127.0.0.1/test",
    ],
)
def test_an_at_after_the_authority_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="percent-encode"):
        Dsn.parse(text)


def test_an_at_in_a_path_without_authority_is_part_of_the_path() -> None:
    assert Dsn.parse("sqlite:///var/db@1.sqlite").path == "/var/db@1.sqlite"


def test_the_percent_encoded_form_of_such_a_password_parses() -> None:
    dsn = Dsn.parse("postgresql://rel:x%2FPw%40q@127.0.0.1/test")

    assert (dsn.user, dsn.password, dsn.host, dsn.path) == ("rel", "x/Pw@q", "127.0.0.1", "/test")


def test_mask_dsn_hides_a_password_with_a_slash_or_an_unclear_user() -> None:
    assert mask_dsn("postgresql://rel:x/Pw@h/test") == "postgresql://rel:***@h/test"
    assert mask_dsn("postgresql://rel@x/Pw@h/test") == "postgresql://***@h/test"
    assert mask_dsn("mysql://root@db/test") == "mysql://root@db/test"


_PRIVATE = "αβδεζηθλμπφψωXYZQ"  # noqa: RUF001
"""Characters no error template, host or scheme uses: a substring holding one is the secret's."""
# Whitespace is left out: a DSN with an unencoded space in its password is refused (tested
# above) but free text cut at whitespace cannot be masked reliably.
_PASSWORDS = st.text(alphabet=_PRIVATE + "@/:?#%[]!$&'()*+,;=\\\"abc019", min_size=1, max_size=24)


def _leaks(secret: str, text: str) -> list[str]:
    """Substrings (3 characters or more, holding a private character) of ``secret`` in ``text``."""
    found = []
    for start in range(len(secret)):
        for end in range(start + 3, len(secret) + 1):
            piece = secret[start:end]
            if not any(c in _PRIVATE for c in piece):
                continue
            forms = {piece, quote(piece, safe=""), quote(piece, safe="/:"), repr(piece)[1:-1]}
            found += [form for form in forms if form in text]
    return found


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(password=_PASSWORDS, user=st.sampled_from(["rel", "", "app"]))
def test_property_no_part_of_a_password_is_ever_shown(password: str, user: str) -> None:
    text = f"postgresql://{user}:{password}@db.example:5432/test?sslmode=disable"
    shown = [mask_dsn(text), repr(TransportConfig(dsn=text))]
    try:
        dsn = Dsn.parse(text)
    except ConfigurationError as error:
        shown.append(str(error))
    else:
        shown += [str(dsn), repr(dsn), dsn.to_url()]
        if not any(c in password for c in "/?#"):
            assert dsn.host == "db.example"
    for each in shown:
        assert _leaks(password, each) == [], each
