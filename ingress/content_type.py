"""restate-server's ingress input validation: body and content-type against the handler."""

from __future__ import annotations

import json

from invoker.api import HandlerInput


class InputValidationError(ValueError):
    """The request body/content-type does not fit the handler (answered with 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"input validation error: {reason}")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def content_type_matches(content_type: str, pattern: str) -> bool:
    """Whether ``content_type`` (parameters ignored) matches ``pattern`` (``*/*``, ``a/*``)."""
    actual = _media_type(content_type)
    wanted = _media_type(pattern)
    if wanted in ("*/*", "*"):
        return True
    a_type, _, a_sub = actual.partition("/")
    w_type, _, w_sub = wanted.partition("/")
    if w_sub == "*":
        return a_type == w_type
    return a_type == w_type and a_sub == w_sub


def _rust_option(value: str | None) -> str:
    return "None" if value is None else f'Some("{value}")'


def validate_input(rules: HandlerInput, body: bytes, content_type: str | None) -> None:
    """Raise :class:`InputValidationError` when restate-server would reject the request."""
    if not rules.accepts_body:
        if body or content_type is not None:
            raise InputValidationError(
                "Expected body and content-type to be empty, but wasn't with content-type "
                f"'{_rust_option(content_type)}'"
            )
        return
    if not body and content_type is None:
        if rules.required:
            raise InputValidationError("Empty body not allowed")
        return
    if content_type is None:
        raise InputValidationError("Empty content-type")
    if rules.content_type is not None and not content_type_matches(
        content_type, rules.content_type
    ):
        raise InputValidationError(
            f"Content-type '{content_type}' does not match '{rules.content_type}'"
        )
    if not body and rules.json:
        raise InputValidationError("Empty body not allowed")
    if rules.json and body:
        _check_json(body)


def _check_json(body: bytes) -> None:
    """Malformed JSON for a JSON handler: a 400 now rather than a failed invocation later.

    restate-server lets it through and the SDK fails the invocation with a terminal 500
    (``Unable to parse an input argument``); refusing it first creates no invocation.
    """
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputValidationError(f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise InputValidationError("malformed JSON body: nested too deeply") from None
