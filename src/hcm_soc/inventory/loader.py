"""Reading and validating the asset inventory from YAML or CSV, collecting every problem.

YAML: one file with top-level `departments:` and `assets:` lists. CSV: one asset per row
(list cells `;`-separated) and the departments in a sibling YAML file `<name>.departments.yml`.
Each problem carries file, line and key path such as `assets[3].addresses[1]`; nothing stops at
the first problem. The checks that span records (duplicate ids, hostnames and ranges, unknown
departments) run after every record was validated on its own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from hcm_soc.errors import SourceLocation
from hcm_soc.inventory.lookup import Inventory
from hcm_soc.inventory.model import (
    CONTACT_ROLES,
    SECTORS,
    SENSITIVITIES,
    Asset,
    Contact,
    Department,
    InventoryError,
    Problem,
    check_address,
    check_hostname,
    check_url,
    normalize_hostname,
    parse_network,
)

R = TypeVar("R", bound=BaseModel)

#: CSV columns: the asset fields; the list ones hold `;`-separated values
CSV_COLUMNS = (
    "id",
    "name",
    "name_en",
    "description",
    "hostnames",
    "addresses",
    "urls",
    "department",
    "sector",
    "criticality",
    "sensitivity",
    "tags",
)
CSV_REQUIRED = ("id", "name", "department", "sector", "criticality")
CSV_LIST_COLUMNS = frozenset({"hostnames", "addresses", "urls", "tags"})
_TOP_KEYS = ("departments", "assets")
_CHOICES = {"sector": SECTORS, "sensitivity": SENSITIVITIES, "role": CONTACT_ROLES}


def departments_file_for(csv_path: Path) -> Path:
    """Where the departments of a CSV inventory live: `city.csv` -> `city.departments.yml`."""
    return csv_path.with_name(f"{csv_path.stem}.departments.yml")


def load_inventory(path: Path) -> Inventory:
    """The inventory at `path`; InventoryError listing every problem if it has any."""
    inventory, problems = read_inventory(path)
    if problems or inventory is None:
        raise InventoryError(problems)
    return inventory


def validate_inventory(path: Path) -> list[Problem]:
    """Every problem of the inventory at `path` (empty when it is fine)."""
    return read_inventory(path)[1]


def read_inventory(path: Path) -> tuple[Inventory | None, list[Problem]]:
    """The inventory (None when it has problems) and every problem found."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        why = "is a folder, not a file" if path.exists() else "no such file"
        return None, [
            Problem(
                SourceLocation(file),
                f"{why}: the asset inventory is set by paths.inventory (HCM_SOC_PATHS_INVENTORY); "
                "see docs/inventory.md for the format",
            )
        ]
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        doc = _read_yaml(path)
        if doc.data is None:  # unreadable, invalid YAML or empty: nothing more to check
            return None, doc.problems
        data = doc.data
        _check_top(doc, data, required=_TOP_KEYS)
        dep_items = _list_at(doc, data, "departments")
        asset_items = _list_at(doc, data, "assets")
        deps = _records(Department, dep_items, "departments", doc)
        assets = _records(Asset, asset_items, "assets", doc)
        dep_doc, asset_doc = doc, doc
    elif suffix == ".csv":
        dep_path = departments_file_for(path)
        dep_doc = _read_yaml(dep_path, hint=f"the departments of the CSV inventory {path.name}")
        if dep_doc.data is not None:
            _check_top(dep_doc, dep_doc.data, required=("departments",), allowed=("departments",))
        dep_items = _list_at(dep_doc, dep_doc.data, "departments")
        deps = _records(Department, dep_items, "departments", dep_doc)
        asset_doc = _read_csv(path)
        asset_items = asset_doc.data["assets"]
        assets = _records(Asset, asset_items, "assets", asset_doc)
    else:
        return None, [
            Problem(
                SourceLocation(file),
                f"unknown inventory format {suffix or '(no suffix)'!r}: use .yml or .csv",
            )
        ]
    _cross_check(dep_items, asset_items, dep_doc, asset_doc)
    problems = dep_doc.problems if dep_doc is asset_doc else [*dep_doc.problems, *asset_doc.problems]
    problems.sort(key=lambda p: (p.location.file, p.location.line or 0))
    if problems:
        return None, problems
    return Inventory([a for _, a in assets], {d.id: d for _, d in deps}, source=file), []


# -- reading ------------------------------------------------------------------------------------------
class _Doc:
    """A parsed file: its data, the line of every key path, and the problems found so far."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.lines: dict[str, int] = {}
        self.problems: list[Problem] = []

    def line(self, key: str) -> int | None:
        """The line of `key`, or of its nearest parent that has one (a missing key: its mapping)."""
        while key:
            if key in self.lines:
                return self.lines[key]
            cut = max(key.rfind("."), key.rfind("["))
            key = key[:cut] if cut > 0 else ""
        return None

    def problem(self, key: str | None, message: str, line: int | None = None) -> None:
        where = SourceLocation(self.file, line if line is not None else self.line(key or ""), key or None)
        self.problems.append(Problem(where, message))


def _read_yaml(path: Path, *, hint: str = "the asset inventory") -> _Doc:
    doc = _Doc(str(path))
    if not path.is_file():
        doc.problem(None, f"no such file: {hint} is expected here (see docs/inventory.md)")
        return doc
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        doc.problem(None, f"cannot read the file: {e}")
        return doc
    try:
        root = yaml.compose(text)
        doc.data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        doc.problem(
            None,
            f"invalid YAML: {getattr(e, 'problem', None) or e}",
            line=mark.line + 1 if mark is not None else None,
        )
        return doc
    if root is None or doc.data is None:
        doc.problem(None, f"the file is empty: {hint} needs top-level `departments:` and `assets:` lists")
        return doc
    _walk(root, "", doc)
    return doc


def _walk(node: yaml.Node, prefix: str, doc: _Doc) -> None:
    """Record the line of every key and list item, and report keys repeated in one mapping
    (PyYAML would silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            name = str(k.value)
            key = f"{prefix}.{name}" if prefix else name
            if name in seen:
                doc.problem(
                    key,
                    f"duplicate key (first at line {doc.lines[key]}); only one is kept",
                    k.start_mark.line + 1,
                )
            else:
                seen.add(name)
                doc.lines[key] = k.start_mark.line + 1
            _walk(v, key, doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            doc.lines[key] = item.start_mark.line + 1
            _walk(item, key, doc)


def _read_csv(path: Path) -> _Doc:
    doc = _Doc(str(path))
    doc.data = {"assets": []}
    try:
        text = path.read_text("utf-8-sig")  # spreadsheet exports often start with a BOM
    except (OSError, UnicodeDecodeError) as e:
        doc.problem(None, f"cannot read the file: {e}")
        return doc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        doc.problem(None, f"invalid CSV: {e}", line=1)
        return doc
    if not header or not any(h.strip() for h in header):
        doc.problem(None, f"the file is empty: expected a header row {','.join(CSV_COLUMNS)}", line=1)
        return doc
    columns = [h.strip().lower() for h in header]
    for name in columns:
        if name not in CSV_COLUMNS:
            doc.problem(f"columns.{name}", f"unknown column; valid columns: {', '.join(CSV_COLUMNS)}", 1)
    missing = [c for c in CSV_REQUIRED if c not in columns]
    if missing:
        doc.problem("columns", f"missing required column(s): {', '.join(missing)}", line=1)
        return doc
    n = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            doc.problem(None, f"invalid CSV: {e}", line=start)
            break
        if not any(cell.strip() for cell in row):
            continue
        key = f"assets[{n}]"
        doc.lines[key] = start
        if len(row) != len(columns):
            doc.problem(key, f"expected {len(columns)} cells like the header, got {len(row)}", start)
        item: dict[str, Any] = {}
        for name, cell in zip(columns, row, strict=False):
            if name not in CSV_COLUMNS or not cell.strip():
                continue
            doc.lines[f"{key}.{name}"] = start
            if name in CSV_LIST_COLUMNS:
                values = [v.strip() for v in cell.split(";") if v.strip()]
                item[name] = values
                for j in range(len(values)):
                    doc.lines[f"{key}.{name}[{j}]"] = start
            else:
                item[name] = cell.strip()
        doc.data["assets"].append(item)
        n += 1
    return doc


# -- structure and records ----------------------------------------------------------------------------
def _check_top(doc: _Doc, data: Any, *, required: Sequence[str], allowed: Sequence[str] = _TOP_KEYS) -> None:
    if not isinstance(data, Mapping):
        doc.problem(
            None, f"expected a mapping with {' and '.join(required)} lists, got {type(data).__name__}", 1
        )
        return
    for k in data:
        if k not in allowed:
            doc.problem(str(k), f"unknown key; valid top-level keys: {', '.join(allowed)}")
    for k in required:
        if k not in data:
            doc.problem(None, f"missing top-level key `{k}:` (a list)", 1)


def _list_at(doc: _Doc, data: Any, key: str) -> list[Any]:
    if not isinstance(data, Mapping) or key not in data:
        return []
    value = data[key]
    if value is None:
        return []
    if not isinstance(value, list):
        doc.problem(key, f"expected a list, got {type(value).__name__}")
        return []
    return value


def _records(model: type[R], items: Sequence[Any], section: str, doc: _Doc) -> list[tuple[int, R]]:
    """Validate each item on its own; the good ones with their index, a problem per bad field."""
    out: list[tuple[int, R]] = []
    for i, item in enumerate(items):
        base = f"{section}[{i}]"
        if not isinstance(item, Mapping):
            doc.problem(base, f"expected a mapping (key: value lines), got {type(item).__name__}")
            continue
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError as e:
            for err in e.errors():
                loc = base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                doc.problem(loc, _message(err, model))
    return out


def _message(err: Any, model: type[BaseModel]) -> str:
    kind: str = err["type"]
    loc = err["loc"]
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    value = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        owner: type[BaseModel] = Contact if "contacts" in loc else model
        return f"unknown key; valid keys: {', '.join(owner.model_fields)}"
    if field == "criticality":
        return f"expected a criticality from 1 to 4 (4 = most critical), got {value!r}"
    if kind == "literal_error" and field in _CHOICES:
        return f"unknown {field} {value!r}; valid: {', '.join(_CHOICES[field])}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_type":
        return f"expected text, got {type(value).__name__} {value!r} (quote it)"
    if kind == "list_type":
        return f"expected a list, got {type(value).__name__}"
    if kind == "too_short" and field == "contacts":
        return "at least one contact is required (someone to notify)"
    if kind == "string_too_short":
        return "must not be empty"
    return str(err["msg"])


# -- checks across records ----------------------------------------------------------------------------
def _cross_check(
    dep_items: Sequence[Any], asset_items: Sequence[Any], dep_doc: _Doc, asset_doc: _Doc
) -> None:
    """Checks across records, on the raw items: a record with a bad field still takes part, so
    one run reports its duplicate id as well as its bad e-mail address."""
    dep_first: dict[str, int] = {}
    for i, d in enumerate(dep_items):
        did = d.get("id") if isinstance(d, Mapping) else None
        if not isinstance(did, str):
            continue
        if did in dep_first:
            first = dep_doc.line(f"departments[{dep_first[did]}].id")
            dep_doc.problem(
                f"departments[{i}].id", f"duplicate department id {did!r} (first at line {first})"
            )
        else:
            dep_first[did] = i
    asset_first: dict[str, int] = {}
    # value -> (asset id or position for messages, key path of its first listing)
    networks: dict[Any, tuple[str, str]] = {}
    names: dict[str, tuple[str, str]] = {}
    urls: dict[tuple[str, str], tuple[str, str]] = {}

    def claim(table: dict[Any, tuple[str, str]], key: Any, owner: str, where: str, what: str) -> None:
        if key not in table:
            table[key] = (owner, where)
            return
        first_owner, first = table[key]
        line = asset_doc.line(first)
        if first.split(".", 1)[0] == where.split(".", 1)[0]:
            asset_doc.problem(where, f"{what} is listed twice in this asset (first at line {line})")
        else:
            asset_doc.problem(
                where,
                f"{what} is also listed by asset {first_owner!r} (line {line}); it must belong to one asset",
            )

    for i, a in enumerate(asset_items):
        if not isinstance(a, Mapping):
            continue
        base = f"assets[{i}]"
        aid = a.get("id")
        owner = aid if isinstance(aid, str) else base
        if isinstance(aid, str):
            if aid in asset_first:
                first = asset_doc.line(f"assets[{asset_first[aid]}].id")
                asset_doc.problem(f"{base}.id", f"duplicate asset id {aid!r} (first at line {first})")
            else:
                asset_first[aid] = i
        dep = a.get("department")
        # without a readable departments file every asset would be "unknown": that file's problem says it
        if isinstance(dep, str) and dep not in dep_first and dep_doc.data is not None:
            valid = ", ".join(sorted(dep_first)) or "none defined"
            asset_doc.problem(f"{base}.department", f"unknown department {dep!r}; known: {valid}")
        if not any(a.get(k) for k in ("hostnames", "addresses", "urls")):
            asset_doc.problem(base, "lists no hostnames, addresses or urls, so no alert can ever match it")
        for j, text in _valid(a.get("addresses"), check_address):
            net = parse_network(text)
            # nested ranges of different assets are fine (the more specific one wins in lookup);
            # the very same range on two assets would make the owner a coin toss
            claim(networks, net, owner, f"{base}.addresses[{j}]", f"address range {net}")
        for j, text in _valid(a.get("hostnames"), check_hostname):
            claim(names, normalize_hostname(text), owner, f"{base}.hostnames[{j}]", f"hostname {text!r}")
        for j, text in _valid(a.get("urls"), check_url):
            parts = urlsplit(text)
            key = (normalize_hostname(parts.hostname or ""), parts.path.rstrip("/"))
            claim(urls, key, owner, f"{base}.urls[{j}]", f"URL {text!r}")


def _valid(values: Any, check: Callable[[str], str]) -> list[tuple[int, str]]:
    """The (index, value) of the list elements that pass `check` (the bad ones are reported already)."""
    if not isinstance(values, list):
        return []
    out: list[tuple[int, str]] = []
    for j, v in enumerate(values):
        if isinstance(v, str):
            try:
                out.append((j, check(v)))
            except ValueError:
                continue
    return out
