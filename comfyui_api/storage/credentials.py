"""Per-request credentials: validating them, matching them to URLs, turning them into headers or query parameters,
and keeping them (and any secret in a URL) out of messages. Knows no provider and does no I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from comfyui_api.errors import InvalidRequest
from comfyui_api.storage.base import Credential

REDACTED = "***"

# Each auth type's fields: canonical name -> accepted spellings (compat: salad uses header_name, query_param, ...).
_REQUIRED_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "bearer": {"token": ("token",)},
    "basic": {"username": ("username",), "password": ("password",)},
    "header": {"name": ("name", "header_name"), "value": ("value", "header_value")},
    "query": {"name": ("name", "query_param"), "value": ("value", "query_value")},
    "s3": {"access_key_id": ("access_key_id",), "secret_access_key": ("secret_access_key",)},
}
_OPTIONAL_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "session_token": ("session_token",),
        "region": ("region",),
        "endpoint_url": ("endpoint_url", "endpoint"),
    },
}
# Fields whose values are secrets and are scrubbed from any text we produce.
_SECRET_FIELDS = {"token", "password", "value", "secret_access_key", "session_token"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _field(auth: Mapping[str, Any], spellings: tuple[str, ...]) -> Any:
    for name in spellings:
        if name in auth:
            return auth[name]
    return None


def validate_credentials(credentials: Sequence[Credential], *, field_name: str = "credentials") -> None:
    """Raise InvalidRequest naming the field (e.g. `credentials[1].auth.token`) when a credential is malformed.
    Messages name fields, never values."""
    for index, credential in enumerate(credentials):
        where = f"{field_name}[{index}]"
        if not isinstance(credential.url_pattern, str) or not credential.url_pattern.strip():
            raise InvalidRequest(f"{where}.url_pattern must be a non-empty string", field=f"{where}.url_pattern")
        auth = credential.auth
        if not isinstance(auth, Mapping):
            raise InvalidRequest(f"{where}.auth must be an object", field=f"{where}.auth")
        kind = auth.get("type")
        if kind not in _REQUIRED_FIELDS:
            known = ", ".join(sorted(_REQUIRED_FIELDS))
            raise InvalidRequest(f"{where}.auth.type must be one of: {known}", field=f"{where}.auth.type")
        for canonical, spellings in _REQUIRED_FIELDS[kind].items():
            value = _field(auth, spellings)
            if not isinstance(value, str) or not value:
                raise InvalidRequest(
                    f"{where}.auth.{canonical} must be a non-empty string for auth type {kind!r}",
                    field=f"{where}.auth.{canonical}",
                )
        for canonical, spellings in _OPTIONAL_FIELDS.get(kind, {}).items():
            value = _field(auth, spellings)
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"{where}.auth.{canonical} must be a string", field=f"{where}.auth.{canonical}")
        if kind == "header" and not _HEADER_NAME.match(_field(auth, ("name", "header_name"))):
            raise InvalidRequest(f"{where}.auth.name is not a valid HTTP header name", field=f"{where}.auth.name")


def pattern_matches(pattern: str, url: str) -> bool:
    """A pattern with `*` or `?` is a glob over the whole URL (`*` stays within one path segment, `**` crosses
    segments, `?` is one character); any other pattern is a prefix."""
    if "*" not in pattern and "?" not in pattern:
        return url.startswith(pattern)
    regex: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            regex.append(".*")
            index += 2
            continue
        regex.append("[^/]*" if char == "*" else "." if char == "?" else re.escape(char))
        index += 1
    return re.fullmatch("".join(regex), url, flags=re.DOTALL) is not None


def matching_credential(
    url: str, credentials: Sequence[Credential], *, auth_types: Iterable[str] = ()
) -> Credential | None:
    """The first credential whose pattern matches `url` (and whose type is in `auth_types`, when given)."""
    wanted = set(auth_types)
    for credential in credentials:
        if wanted and credential.auth.get("type") not in wanted:
            continue
        if pattern_matches(credential.url_pattern, url):
            return credential
    return None


@dataclass(frozen=True)
class HttpAuth:
    """What a credential adds to an HTTP request. Values are secrets and stay out of repr."""

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def http_auth_for(credential: Credential) -> HttpAuth:
    """Headers and query parameters for a bearer, basic, header or query credential (s3 adds nothing)."""
    auth = credential.auth
    kind = auth.get("type")
    if kind == "bearer":
        return HttpAuth(headers=(("Authorization", f"Bearer {auth['token']}"),))
    if kind == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        return HttpAuth(headers=(("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")),))
    if kind == "header":
        return HttpAuth(headers=((_field(auth, ("name", "header_name")), _field(auth, ("value", "header_value"))),))
    if kind == "query":
        return HttpAuth(query=((_field(auth, ("name", "query_param")), _field(auth, ("value", "query_value"))),))
    return HttpAuth()


@dataclass(frozen=True)
class S3Credentials:
    """Explicit S3 keys from a request credential. Secrets stay out of repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    endpoint_url: str | None = None


def s3_credentials_for(url: str, credentials: Sequence[Credential]) -> S3Credentials | None:
    credential = matching_credential(url, credentials, auth_types=("s3",))
    if credential is None:
        return None
    auth = credential.auth
    return S3Credentials(
        access_key_id=auth["access_key_id"],
        secret_access_key=auth["secret_access_key"],
        session_token=auth.get("session_token"),
        region=auth.get("region"),
        endpoint_url=_field(auth, ("endpoint_url", "endpoint")),
    )


def bearer_token_for(url: str, credentials: Sequence[Credential]) -> str | None:
    credential = matching_credential(url, credentials, auth_types=("bearer",))
    return None if credential is None else str(credential.auth["token"])


def split_userinfo(url: str) -> tuple[str, Credential | None]:
    """`https://user:pass@host/x` -> (`https://host/x`, a basic credential for exactly that URL)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    bare = urlunsplit(parts._replace(netloc=netloc))
    auth = {"type": "basic", "username": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    return bare, Credential(url_pattern=bare, auth=auth)


def redact_url(url: str) -> str:
    """The URL with its userinfo and every query value replaced by `***` (names stay, to help debugging)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, REDACTED) for name, _ in pairs], safe="*") if pairs else REDACTED
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


def strip_secrets(url: str) -> str:
    """The URL without userinfo and query: what may be returned to a caller or stored."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, "", ""))


def secrets_of(
    credentials: Sequence[Credential], urls: Iterable[str] = (), extra: Iterable[str | None] = ()
) -> tuple[str, ...]:
    """Every secret string that must never appear in text: credential values, URL passwords and query values."""
    found: set[str] = {value for value in extra if value}
    for credential in credentials:
        for name, value in credential.auth.items():
            if isinstance(value, str) and value and (name in _SECRET_FIELDS or name.endswith("_value")):
                found.add(value)
                found.add(quote(value, safe=""))
        if credential.auth.get("type") == "basic":
            pair = f"{credential.auth.get('username')}:{credential.auth.get('password')}".encode()
            found.add(base64.b64encode(pair).decode("ascii"))
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.password:
            found.update({parts.password, unquote(parts.password)})
        for _, value in parse_qsl(parts.query, keep_blank_values=True):
            if value:
                found.update({value, quote(value, safe="")})
    # Very short strings would mangle ordinary words; they are not credible secrets anyway.
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced by `***`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def describe_error(exc: BaseException, secrets: Sequence[str]) -> str:
    """`<exception type>: <message>`, scrubbed of every secret, for a StorageError's message."""
    return scrub(f"{type(exc).__name__}: {exc}", secrets)
