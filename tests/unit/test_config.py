"""Settings: defaults, sources, and errors that name the setting and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcm_soc.config import load_settings, setting_names
from hcm_soc.errors import ConfigError


def _problems(env: dict[str, str], config_file: Path | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(env=env, config_file=config_file)
    return str(exc.value)


def test_defaults_use_the_local_node_and_verify_tls() -> None:
    s = load_settings(env={})
    assert s.uses_local_node
    assert s.es.verify_tls is True
    assert s.index.prefix == "hcm"
    assert s.timezone == "Asia/Ho_Chi_Minh"


def test_environment_sets_nested_settings() -> None:
    s = load_settings(
        env={
            "HCM_SOC_ES_URL": "https://es1.soc.hcm:9200, https://es2.soc.hcm:9200",
            "HCM_SOC_ES_API_KEY": "abc",
            "HCM_SOC_ES_VERIFY_TLS": "false",
            "HCM_SOC_INDEX_PREFIX": "soc",
            "HCM_SOC_SMTP_HOST": "mail.hcm.gov.vn",
            "HCM_SOC_BULK_MAX_DOCS": "200",
        }
    )
    assert s.es.url == ["https://es1.soc.hcm:9200", "https://es2.soc.hcm:9200"]
    assert not s.uses_local_node
    assert s.es.verify_tls is False
    assert (s.index.prefix, s.smtp.host, s.bulk.max_docs) == ("soc", "mail.hcm.gov.vn", 200)


def test_bad_url_names_the_variable_and_the_expected_form() -> None:
    msg = _problems({"HCM_SOC_ES_URL": "localhost:9200"})
    assert "es.url" in msg and "HCM_SOC_ES_URL" in msg
    assert "expected an http(s) URL" in msg


def test_every_problem_is_reported_at_once() -> None:
    msg = _problems(
        {
            "HCM_SOC_BULK_MAX_DOCS": "many",
            "HCM_SOC_INDEX_PREFIX": "Bad Prefix",
            "HCM_SOC_TIMEZONE": "Mars/Base",
        }
    )
    assert "3 problem(s)" in msg
    assert "bulk.max_docs (env HCM_SOC_BULK_MAX_DOCS)" in msg and "'many'" in msg
    assert "index.prefix (env HCM_SOC_INDEX_PREFIX)" in msg
    assert "Mars/Base" in msg


def test_credentials_must_come_in_pairs() -> None:
    msg = _problems({"HCM_SOC_ES_URL": "https://es:9200", "HCM_SOC_ES_USERNAME": "soc"})
    assert "es.username and es.password must be given together" in msg


def test_missing_ca_certificate_is_named(tmp_path: Path) -> None:
    msg = _problems({"HCM_SOC_ES_CA_CERT": str(tmp_path / "ca.pem")})
    assert "es.ca_cert (env HCM_SOC_ES_CA_CERT)" in msg and "does not exist" in msg


def test_unknown_variable_suggests_the_right_one() -> None:
    msg = _problems({"HCM_SOC_ES_ULR": "https://es:9200"})
    assert "HCM_SOC_ES_ULR: not a hcm-soc setting; did you mean HCM_SOC_ES_URL?" in msg


def test_yaml_errors_name_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm-soc.yml"
    cfg.write_text(
        "es:\n  url: https://es:9200\n  verify_tls: maybe\nindex:\n  prefixx: soc\n", encoding="utf-8"
    )
    msg = _problems({}, cfg)
    assert f"es.verify_tls ({cfg}:3)" in msg
    assert f"index.prefixx ({cfg}:5)" in msg and "unknown setting" in msg


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "hcm-soc.yml"
    cfg.write_text("index:\n  prefix: fromfile\n  namespace: hcmc\n", encoding="utf-8")
    s = load_settings(env={"HCM_SOC_CONFIG": str(cfg), "HCM_SOC_INDEX_PREFIX": "fromenv"})
    assert (s.index.prefix, s.index.namespace) == ("fromenv", "hcmc")


def test_missing_or_broken_file(tmp_path: Path) -> None:
    assert "does not exist" in _problems({"HCM_SOC_CONFIG": str(tmp_path / "nope.yml")})
    bad = tmp_path / "bad.yml"
    bad.write_text("es: [unclosed\n", encoding="utf-8")
    assert f"{bad}:" in _problems({}, bad) and "not valid YAML" in _problems({}, bad)


def test_every_setting_has_an_env_variable() -> None:
    names = setting_names()
    assert names["es.url"] == "HCM_SOC_ES_URL"
    assert names["local_es.port"] == "HCM_SOC_LOCAL_ES_PORT"
    assert names["smtp.host"] == "HCM_SOC_SMTP_HOST"
    assert names["webhook.secret"] == "HCM_SOC_WEBHOOK_SECRET"
