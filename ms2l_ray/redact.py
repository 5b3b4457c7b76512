"""The one place that decides what a secret looks like and how it is kept out of output.

Why one module: the cluster-recipe checker (:mod:`tools.check_cluster`), MLflow param logging
(:mod:`ms2l_ray.tracking.runs`) and every record or error message that names a URI must agree on which
keys hold credentials and on the redacted form of a URI; two detectors drift apart (one masked ``author``,
the other did not mask ``pwd``). Everything here is pure string work, importable without MLflow or Ray.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"  # what replaces a credential: URI userinfo, a secret query value, a secret param value

SECRET_WORDS = {"password", "passwd", "pwd", "secret", "token", "credential", "credentials", "apikey"}
SECRET_PARTS = ("password", "passwd", "secret", "apikey", "credential")  # also inside PGPASSWORD, APISECRET
SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("auth", "key")}
NOT_SECRET_LAST = {"mode", "path", "file", "dir", "ref", "name", "names"}  # RAY_AUTH_MODE, secretKeyRef ...
# Query parameters are short and conventional: ``?key=…``, ``?sig=…`` (Azure SAS), ``X-Amz-Signature`` carry
# credentials although no config key would be called that.
QUERY_SECRET_WORDS = {"key", "sig", "signature", "auth", "pass", "pw", "code", "jwt", "session"}
URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)\]]")  # no trailing punctuation


def _words(key: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", key)]


def is_secret_key(key: str) -> bool:
    """``MLFLOW_TRACKING_PASSWORD``, ``apiKey``, ``PGPASSWORD`` yes; ``RAY_AUTH_MODE``, ``secretKeyRef`` no."""
    words = _words(key)
    if not words or words[-1] in NOT_SECRET_LAST:
        return False
    return (bool(SECRET_WORDS & set(words)) or any(p in SECRET_PAIRS for p in zip(words, words[1:], strict=False))
            or any(part in "".join(words) for part in SECRET_PARTS))


def is_secret_query_key(key: str) -> bool:
    """A query parameter holding a credential: any :func:`is_secret_key`, or ``key``/``sig``/``X-Amz-Signature``."""
    return is_secret_key(key) or bool(QUERY_SECRET_WORDS & set(_words(key)))


def redact_uri(uri: str | None) -> str | None:
    """``https://user:pw@host/x?token=t&a=1`` → ``https://***@host/x?token=***&a=1``.

    URIs written to records, params, tags, logs or error messages carry no credentials: the userinfo is
    replaced as a whole (a user name alone can be a token, e.g. GitHub's ``https://<token>@…``), and so is
    the value of every query parameter :func:`is_secret_query_key` flags. Anything else stays byte-identical,
    so a redacted URI without credentials compares equal to the original (resume records rely on that).
    """
    if uri is None:
        return None
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#]*)(.*)\Z", uri, flags=re.DOTALL)
    if m is None:
        return uri
    scheme, netloc, rest = m.groups()
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query_at = rest.find("?")
    if query_at >= 0:
        path, query = rest[:query_at], rest[query_at + 1:]
        fragment = ""
        if "#" in query:
            query, _, frag = query.partition("#")
            fragment = "#" + frag
        parts = []
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            parts.append(f"{key}={REDACTED}" if eq and value and is_secret_query_key(key) else item)
        rest = f"{path}?{'&'.join(parts)}{fragment}"
    return f"{scheme}{netloc}{rest}"


def redact_text(text: str) -> str:
    """Every URI inside free text (a param value, an exception message) passed through :func:`redact_uri`."""
    return URI.sub(lambda m: redact_uri(m.group(0)) or "", text)


def is_redacted(uri: str) -> bool:
    """True when :func:`redact_uri` left credentials out of ``uri`` (it cannot be used as it stands)."""
    return f"://{REDACTED}@" in uri or f"={REDACTED}" in uri


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``https://u:p@host/x`` → (``https://host/x``, ``u``, ``p``), percent-decoded; (url, None, None) without.

    Why: ``urllib`` takes a URL's userinfo for part of the host name, so a credentialed server must be asked
    without it, the user and password going into an ``Authorization`` header instead.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return (urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), unquote(user),
            unquote(password) if colon else None)

