"""Credentials out of every URI the project prints or logs.

A tracking URI may carry them (`https://user:token@mlflow.example/`, a database URL with a
password) and so may a message that quotes one (MLflow's "View run at ..." line, an error from
the server). `redact(text)` masks the password of every `scheme://user:password@` in a text, a
bare `scheme://token@` userinfo, the value of query parameters that name a secret, and the
values of the credentials MLflow takes from the environment (SECRET_ENV); the rest of the URI
stays readable, so the message still says where. `redacted(exc)` is the same for an exception and
its causes, for a traceback that --debug shows."""

from __future__ import annotations

import logging
import os
import re

MASK = "***"
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:?#]*)"
    r"(?::(?P<password>[^\s/@?#]*))?@"
)
_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|token|access_token|secret|"
    r"api_key|apikey|key|signature|sig|x-amz-signature|x-amz-credential)=)[^&\s#]*"
)


def _mask_userinfo(match: re.Match) -> str:
    if match["password"] is not None:
        return f"{match['scheme']}{match['user']}:{MASK}@"
    return f"{match['scheme']}{MASK}@"  # a lone userinfo is as often a token as a name


# Credentials MLflow's client sends from the environment, never in a URI (a bearer token for an
# ingress, a basic-auth password): their values are masked wherever they appear.
SECRET_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")


def redact(text: str) -> str:
    """`text` with the credentials of every URI in it masked, and the values of SECRET_ENV."""
    text = _SECRET_QUERY.sub(rf"\g<1>{MASK}", _USERINFO.sub(_mask_userinfo, str(text)))
    for name in SECRET_ENV:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:  # a shorter value would mask ordinary words
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `redact`, for handlers of libraries that log URIs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_handlers(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger if None), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_records(*names: str) -> None:
    """Put the filter on the loggers `names` themselves, once: every record they log is redacted
    whichever handler (the application's, pytest's) takes it."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


class RedactedError(Exception):
    """Stands in, in a traceback, for an exception whose text may carry credentials."""


def redacted(exc: BaseException, depth: int = 0) -> RedactedError:
    """`exc` as a RedactedError: its type and text redacted, its frames kept (a traceback shows
    the code, not the values), and so the exceptions it was raised from or during."""
    copy = RedactedError(redact(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))
    copy.__traceback__ = exc.__traceback__
    if depth < 10:
        if exc.__cause__ is not None:
            copy.__cause__ = redacted(exc.__cause__, depth + 1)
        elif exc.__context__ is not None and not exc.__suppress_context__:
            copy.__context__ = redacted(exc.__context__, depth + 1)
    copy.__suppress_context__ = exc.__suppress_context__ or exc.__cause__ is not None
    return copy
