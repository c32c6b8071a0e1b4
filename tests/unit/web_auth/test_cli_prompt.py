"""`hcm-soc users add/passwd` ask for the password before touching Elasticsearch: a weak or
mistyped password is refused with the policy's message and nothing is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.users import app
from hcm_soc.passwords import WeakPassword
from hcm_soc.store.users import InvalidUser

# no Elasticsearch answers here: reaching it would fail the test with a connection error
ENV = {"HCM_SOC_ES_URL": "http://127.0.0.1:9", "HCM_SOC_CONFIG": ""}


def test_prompt_refuses_a_weak_password() -> None:
    result = CliRunner().invoke(
        app, ["add", "analyst1", "--role", "analyst"], input="short pw\nshort pw\n", obj=AppContext(), env=ENV
    )
    assert isinstance(result.exception, WeakPassword)
    assert "at least 12" in str(result.exception)
    assert "short pw" not in result.output  # the prompt hides what is typed


def test_prompt_asks_twice_and_refuses_a_mismatch() -> None:
    result = CliRunner().invoke(
        app,
        ["add", "analyst1", "--role", "analyst"],
        input="correct horse battery\ncorrect horse batterY\n",
        obj=AppContext(),
        env=ENV,
    )
    assert result.exit_code != 0
    assert "do not match" in result.output


@pytest.mark.parametrize(
    ("args", "error", "phrase"),
    [
        (["add", "Bad Name", "--role", "admin", "--password-stdin"], InvalidUser, "lowercase"),
        (["add", "owner1", "--role", "owner", "--password-stdin"], InvalidUser, "--department"),
        (["add", "admin1", "--role", "admin", "--password-stdin"], WeakPassword, "it is the user name"),
    ],
)
def test_bad_input_is_refused_before_any_write(args: list[str], error: type, phrase: str) -> None:
    result = CliRunner().invoke(app, args, input="admin1\n", obj=AppContext(), env=ENV)
    assert isinstance(result.exception, error)
    assert phrase in str(result.exception)


def test_a_bad_role_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["add", "x1", "--role", "root"], obj=AppContext(), env=ENV)
    assert result.exit_code == 2
    assert "analyst, owner, admin" in result.output
