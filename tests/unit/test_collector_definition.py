"""Source definitions: every problem named with file, line, key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcm_soc.collectors.definition import DefinitionError, load_definition, load_definitions

FORMATS = {"syslog", "nginx", "evtx", "jsonl", "raw"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _errors(path: Path, **kw: object) -> str:
    with pytest.raises(DefinitionError) as exc:
        load_definition(path, FORMATS, **kw)  # type: ignore[arg-type]
    return str(exc.value)


def test_valid_file_source(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    p = _write(
        tmp_path,
        "a.yml",
        f"name: portal\ntype: file\nformat: nginx\nfile:\n  paths: [{tmp_path}/logs/*.log]\n",
    )
    d = load_definition(p, FORMATS)
    assert d.file is not None and d.file.start_at == "beginning"
    assert d.timezone == "Asia/Ho_Chi_Minh"


def test_unknown_key_bad_type_and_missing_section(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "b.yml",
        "name: fw\ntype: syslog\nformat: syslog\nlisten_port: 514\nsyslog:\n  protocol: sctp\n",
    )
    msg = _errors(p)
    assert f"{p}:4: listen_port: unknown key" in msg
    assert f"{p}:6: syslog.protocol:" in msg and "'sctp'" in msg
    p2 = _write(tmp_path, "c.yml", "name: web\ntype: file\nformat: nginx\n")
    assert "needs a 'file:' section" in _errors(p2)
    p3 = _write(tmp_path, "d.yml", "name: web\ntype: file\nformat: nginx\nfile: {}\n")
    assert "file.paths: required key is missing" in _errors(p3)


def test_missing_folder_and_unknown_format(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "e.yml",
        "name: web\ntype: file\nformat: nginix\nfile:\n  paths: [/nonexistent/dir/access.log]\n",
    )
    msg = _errors(p)
    assert f"{p}:3: format: unknown format 'nginix'" in msg
    assert "the folder of '/nonexistent/dir/access.log' does not exist" in msg
    assert "does not exist" not in _errors(p, check_paths=False)


def test_tls_needs_certificate(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "f.yml",
        "name: s\ntype: syslog\nformat: syslog\nsyslog:\n  protocol: tls\n  listen: 0.0.0.0:6514\n",
    )
    assert "protocol tls needs tls_cert and tls_key" in _errors(p)
    p2 = _write(tmp_path, "g.yml", "name: s\ntype: syslog\nformat: syslog\nsyslog:\n  listen: localhost\n")
    assert "expected host:port" in _errors(p2)


def test_one_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    _write(tmp_path, "1.yml", "name: one\ntype: syslog\nformat: syslog\n")
    _write(tmp_path, "2.yml", "name: two\ntype: syslog\nformat: [not, a, string]\n")
    _write(tmp_path, "3.yml", "name: one\ntype: syslog\nformat: raw\n")
    _write(tmp_path, "4.yml", "name: four\n  bad: indentation\n")
    good, bad = load_definitions(tmp_path, FORMATS)
    assert [d.name for d in good] == ["one"]
    text = "\n".join(str(e) for e in bad)
    assert "2.yml:3: format" in text
    assert "name 'one' is already used by" in text
    assert "4.yml:2: not valid YAML" in text
