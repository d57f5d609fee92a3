"""Every domain error declares its HTTP status, and one handler answers each with it, in one body shape."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from flask import Flask

import assets
import bandits
from bandits.errors import MarqueeError, Rejected
from bandits.storage import SchemaTooNew
from bandits.vw.workspace import VWError

# Errors that never reach a client: each is translated where it is caught (VW refusing an example
# becomes a ModelFailure while serving, a SpecError in an evaluation), or stops the service at start
# (a store written by a newer Marquee).
INTERNAL = {VWError, SchemaTooNew}


def _modules() -> list[str]:
    names = []
    for package in (bandits, assets):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.append(info.name)
    return names


def domain_errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__name__}"] = value
    return [found[key] for key in sorted(found)]


def test_every_error_of_bandits_and_assets_declares_its_status():
    errors = domain_errors()
    assert len(errors) >= 20
    undeclared = [cls.__qualname__ for cls in errors if not issubclass(cls, MarqueeError) and cls not in INTERNAL]
    assert undeclared == []
    for cls in errors:
        if issubclass(cls, MarqueeError):
            assert 400 <= cls.status < 600 and cls.code, cls


def _instance(cls: type[MarqueeError]) -> MarqueeError:
    if issubclass(cls, Rejected):
        return cls("refused for a reason", status=409)
    if cls.__name__ in ("StorageBusy", "StorageUnreachable", "StorageUnavailable"):
        return cls("database is locked")
    if cls.__name__ == "Refused":  # Personalizer's dialect carries Personalizer's code
        return cls("refused for a reason", code="BadRequest")
    return cls("refused for a reason")


@pytest.mark.parametrize(
    "cls", [cls for cls in domain_errors() if issubclass(cls, MarqueeError)], ids=lambda cls: cls.__qualname__
)
def test_the_one_handler_answers_each_with_its_status_and_code(app: Flask, cls: type[MarqueeError]):
    error = _instance(cls)

    def fail() -> None:
        raise error

    app.add_url_rule("/v1/test-error", "test_error", fail)
    response = app.test_client().get("/v1/test-error")
    assert response.status_code == error.status
    body = response.get_json()
    assert body == {"error": {"code": error.code, "message": error.message, "details": None}}
    if error.status == 503:
        assert response.headers["Retry-After"]


def test_a_rejection_says_its_status_by_its_code():
    assert [(Rejected("x", status=s).status, Rejected("x", status=s).code) for s in (404, 409, 422)] == [
        (404, "not_found"),
        (409, "conflict"),
        (422, "invalid"),
    ]
    with pytest.raises(ValueError, match="status"):
        Rejected("x", status=500)
