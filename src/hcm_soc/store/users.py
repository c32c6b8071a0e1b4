"""Console users, login sessions and API tokens in `<prefix>-users`, one document per thing.

| document      | `_id`                      | holds                                                     |
| ------------- | -------------------------- | --------------------------------------------------------- |
| `type: user`    | `user:<username>`          | the `User` fields and the argon2id `password_hash`        |
| `type: session` | `session:<sha256(id)>`     | username, CSRF token, created / last_seen / expires, ttl  |
| `type: token`   | `token:<sha256(token)>`    | username, token name, created / last_used, a short hint   |

Secrets (session ids, API tokens) are never stored: only their SHA-256. Both carry 256 bits of
randomness, so a plain hash is enough (no salt or slow hash needed), and looking a secret up by
its hash as the document id means no secret is ever compared byte by byte in Python — the
lookup is the constant-time comparison. Sessions slide: each use pushes `expires` to now + ttl
(written at most once a minute, so pages do not cost a write each). A disabled user, or one
whose sessions were ended, gets `None` from every lookup at once; the user record is read on
each lookup so role and department changes apply to the next request.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.passwords import PasswordHashing, check_password
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Role = Literal["analyst", "owner", "admin"]
ROLES: tuple[Role, ...] = ("analyst", "owner", "admin")

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
DEPARTMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # inventory ids (inventory/model.py)
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_RE = re.compile(r"^hcm_[A-Za-z0-9_-]{43}$")
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
TOKEN_PREFIX = "hcm_"
#: a session's `expires` / a token's `last_used` is rewritten at most this often
TOUCH_EVERY = timedelta(seconds=60)
_MAX_LIST = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class UserStoreError(HcmSocError):
    """Elasticsearch refused to read or write a user, session or token."""


class UserExists(HcmSocError):
    """A user with that name exists already."""

    exit_code = 2


class UserNotFound(HcmSocError):
    """No user with that name."""

    exit_code = 2


class TokenExists(HcmSocError):
    """The user has a token with that name already."""

    exit_code = 2


class TokenNotFound(HcmSocError):
    """The user has no token with that name."""

    exit_code = 2


class InvalidUser(HcmSocError):
    """A user name, role, department list or token name that cannot be stored."""

    exit_code = 2


def _check_username(value: str) -> str:
    if not USERNAME_RE.match(value):
        raise ValueError(
            f"{value!r}: a user name is 2-64 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 'nguyen.van.a')"
        )
    return value


def _check_departments(value: list[str]) -> list[str]:
    for dep in value:
        if not DEPARTMENT_RE.match(dep):
            raise ValueError(f"{dep!r}: not an inventory department id (lowercase letters, digits, '_', '-')")
    return sorted(set(value))


Username = Annotated[str, AfterValidator(_check_username)]


class User(BaseModel):
    """A console user as the rest of hcm-soc sees it (the password hash never leaves this module)."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    display_name: str | None = Field(default=None, max_length=200)
    role: Role
    departments: Annotated[list[str], AfterValidator(_check_departments)] = Field(default_factory=list)
    disabled: bool = False
    created: datetime | None = None
    updated: datetime | None = None
    last_login: datetime | None = None


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What may be shown about a token: never the token itself."""

    username: str
    name: str
    created: datetime
    last_used: datetime | None
    hint: str  # "hcm_AbCd…": enough to tell tokens apart in a list


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user_id(username: str) -> str:
    return f"user:{username}"


def _session_doc_id(session_id: str) -> str:
    return f"session:{hash_secret(session_id)}"


def _token_doc_id(token: str) -> str:
    return f"token:{hash_secret(token)}"


def _reason(e: ApiError) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    error = body.get("error")
    causes = (error.get("root_cause") if isinstance(error, dict) else None) or []
    if causes and isinstance(causes[0], dict):
        return f"{causes[0].get('type')}: {causes[0].get('reason')}"
    return str(e.message)


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def validate_role_departments(role: str, departments: Sequence[str]) -> list[str]:
    if role not in ROLES:
        raise InvalidUser(f"role {role!r}: expected one of {', '.join(ROLES)}")
    deps = list(departments)
    try:
        deps = _check_departments(deps)
    except ValueError as e:
        raise InvalidUser(str(e)) from e
    if role == "owner" and not deps:
        raise InvalidUser(
            "an owner sees only the incidents of its departments: give at least one department id "
            "from the inventory (`--department ID`)"
        )
    if role != "owner" and deps:
        raise InvalidUser(
            f"departments apply to the owner role only; a(n) {role} sees every department — "
            "drop the departments or use role owner"
        )
    return deps


class UserStore:
    def __init__(
        self,
        client: Elasticsearch,
        names: IndexNames,
        *,
        clock: Callable[[], datetime] = utcnow,
        hashing: PasswordHashing | None = None,
    ) -> None:
        self.client = client
        self.names = names
        self.clock = clock
        self.hashing = hashing or PasswordHashing()

    @property
    def index(self) -> str:
        return self.names.users

    @contextmanager
    def _es(self, what: str) -> Iterator[None]:
        try:
            yield
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not {what} in {self.index}: Elasticsearch did not answer ({e})"
            ) from e
        except ApiError as e:
            if isinstance(e, NotFoundError | ConflictError):
                raise
            raise UserStoreError(
                f"could not {what} in {self.index}: {_reason(e)}; run `hcm-soc init` if the users "
                "mapping is outdated"
            ) from e

    # -- users -----------------------------------------------------------------------------------

    def _get_user_doc(self, username: str) -> tuple[dict[str, Any], int, int] | None:
        if not USERNAME_RE.match(username):
            return None
        with self._es(f"read user {username!r}"):
            try:
                resp = self.client.get(index=self.index, id=_user_id(username))
            except NotFoundError:
                return None
        return dict(resp["_source"]), int(resp["_seq_no"]), int(resp["_primary_term"])

    @staticmethod
    def _user(src: dict[str, Any]) -> User:
        return User.model_validate({k: v for k, v in src.items() if k in User.model_fields})

    def _write_user(self, doc: dict[str, Any], seq_no: int, primary_term: int) -> None:
        with self._es(f"update user {doc['username']!r}"):
            try:
                self.client.index(
                    index=self.index,
                    id=_user_id(doc["username"]),
                    document=doc,
                    if_seq_no=seq_no,
                    if_primary_term=primary_term,
                    refresh="wait_for",
                )
            except ConflictError as e:
                raise UserStoreError(
                    f"user {doc['username']!r} changed while it was being updated; run the command again"
                ) from e

    def _require(self, username: str) -> tuple[dict[str, Any], int, int]:
        found = self._get_user_doc(username)
        if found is None:
            raise UserNotFound(f"no user {username!r}; `hcm-soc users list` shows the users")
        return found

    def add(
        self,
        username: str,
        password: str,
        *,
        role: Role,
        departments: Sequence[str] = (),
        display_name: str | None = None,
    ) -> User:
        """Create a user; `UserExists` if the name is taken, `WeakPassword` / `InvalidUser` on bad input."""
        if not USERNAME_RE.match(username):
            raise InvalidUser(_username_message(username))
        deps = validate_role_departments(role, departments)
        check_password(password, username=username)
        now = self.clock()
        user = User(
            username=username,
            display_name=display_name or None,
            role=role,
            departments=deps,
            created=now,
            updated=now,
        )
        doc = {
            "type": "user",
            "@timestamp": now.isoformat(),
            **user.model_dump(mode="json"),
            "password_hash": self.hashing.hash(password),
        }
        with self._es(f"add user {username!r}"):
            try:
                self.client.index(
                    index=self.index,
                    id=_user_id(username),
                    document=doc,
                    op_type="create",
                    refresh="wait_for",
                )
            except ConflictError as e:
                raise UserExists(
                    f"user {username!r} exists already; `hcm-soc users passwd {username}` changes its password"
                ) from e
        return user

    def get(self, username: str) -> User | None:
        found = self._get_user_doc(username)
        return self._user(found[0]) if found else None

    def list(self) -> list[User]:
        with self._es("list users"):
            resp = self.client.search(
                index=self.index,
                query={"term": {"type": "user"}},
                sort=[{"username": {"order": "asc", "unmapped_type": "keyword"}}],
                size=_MAX_LIST,
                ignore_unavailable=True,
            )
        return [self._user(h["_source"]) for h in resp["hits"]["hits"]]

    def set_password(self, username: str, password: str, *, keep_session: str | None = None) -> None:
        """New password (policy checked); every session of the user ends except `keep_session`."""
        check_password(password, username=username)
        src, seq, term = self._require(username)
        now = self.clock()
        src.update(password_hash=self.hashing.hash(password), updated=now.isoformat())
        self._write_user(src, seq, term)
        self.end_sessions(username, keep=keep_session)

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (every session ends; tokens stop verifying) or enable a user."""
        src, seq, term = self._require(username)
        src.update(disabled=disabled, updated=self.clock().isoformat())
        self._write_user(src, seq, term)
        if disabled:
            self.end_sessions(username)

    def update(
        self,
        username: str,
        *,
        role: Role | None = None,
        departments: Sequence[str] | None = None,
        display_name: str | None = None,
    ) -> User:
        """Change role, departments or display name. Leaving the owner role drops the departments."""
        src, seq, term = self._require(username)
        new_role = role or src["role"]
        if departments is None:
            departments = (src.get("departments") or []) if new_role == "owner" else []
        src["departments"] = validate_role_departments(new_role, departments)
        src["role"] = new_role
        if display_name is not None:
            src["display_name"] = display_name or None
        src["updated"] = self.clock().isoformat()
        self._write_user(src, seq, term)
        return self._user(src)

    def verify_password(self, username: str, password: str) -> User | None:
        """The user when the password is right and the account enabled, else None.

        Unknown names are checked against a dummy hash so they cost the same time as known ones.
        A success records `last_login` and re-hashes with the current parameters when they changed.
        """
        name = username.strip().lower()
        found = self._get_user_doc(name)
        stored = found[0].get("password_hash") if found else None
        result = self.hashing.verify(stored, password)
        if not result.ok or found is None:
            return None
        src, seq, term = found
        if src.get("disabled"):
            return None
        now = self.clock().isoformat()
        src["last_login"] = now
        if result.needs_rehash:
            src["password_hash"] = self.hashing.hash(password)
        # a concurrent change of the record (another login) only loses this last_login stamp
        with suppress(UserStoreError):
            self._write_user(src, seq, term)
        return self._user(src)

    # -- sessions --------------------------------------------------------------------------------

    def create_session(self, username: str, *, ttl: float) -> tuple[str, str]:
        """A new session for a user: (session id for the cookie, CSRF token). Only the id's hash is stored."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        doc = {
            "type": "session",
            "@timestamp": now.isoformat(),
            "username": username,
            "csrf": csrf,
            "created": now.isoformat(),
            "last_seen": now.isoformat(),
            "expires": (now + timedelta(seconds=ttl)).isoformat(),
            "ttl": ttl,
        }
        with self._es(f"create a session for {username!r}"):
            self.client.index(
                index=self.index, id=_session_doc_id(session_id), document=doc, op_type="create"
            )
        return session_id, csrf

    def session_user(self, session_id: str) -> tuple[Session, User] | None:
        """The live session and its (enabled) user, sliding the expiry; None when not valid."""
        if not SESSION_ID_RE.match(session_id):
            return None
        doc_id = _session_doc_id(session_id)
        with self._es("read a session"):
            try:
                src = dict(self.client.get(index=self.index, id=doc_id)["_source"])
            except NotFoundError:
                return None
        if src.get("type") != "session":
            return None
        now = self.clock()
        expires = _dt(src["expires"])
        assert expires is not None
        if expires <= now:
            self._delete(doc_id)
            return None
        found = self._get_user_doc(src["username"])
        if found is None or found[0].get("disabled"):
            return None
        last_seen = _dt(src.get("last_seen")) or now
        if now - last_seen >= TOUCH_EVERY:
            expires = now + timedelta(seconds=float(src.get("ttl") or 0))
            with self._es("extend a session"):
                try:
                    self.client.update(
                        index=self.index,
                        id=doc_id,
                        doc={"last_seen": now.isoformat(), "expires": expires.isoformat()},
                    )
                except NotFoundError:
                    return None  # logged out in the meantime
                except ConflictError:
                    pass  # a parallel request extended it already
        return Session(src["username"], src["csrf"], expires), self._user(found[0])

    def get_session(self, session_id: str) -> Session | None:
        found = self.session_user(session_id)
        return found[0] if found else None

    def _delete(self, doc_id: str) -> bool:
        with self._es("delete a session or token"):
            try:
                self.client.delete(index=self.index, id=doc_id, refresh="wait_for")
            except NotFoundError:
                return False
        return True

    def delete_session(self, session_id: str) -> bool:
        """End one session (logout); False if it did not exist."""
        if not SESSION_ID_RE.match(session_id):
            return False
        return self._delete(_session_doc_id(session_id))

    def end_sessions(self, username: str, *, keep: str | None = None) -> int:
        """End every session of a user except `keep` (a session id); returns how many ended."""
        must_not = [{"ids": {"values": [_session_doc_id(keep)]}}] if keep else []
        query = {
            "bool": {
                "filter": [{"term": {"type": "session"}}, {"term": {"username": username}}],
                "must_not": must_not,
            }
        }
        ended = 0
        with self._es(f"end the sessions of {username!r}"):
            while True:
                # sessions are written without a refresh (logins stay fast): make them searchable
                # first. Search + bulk delete rather than _delete_by_query, which needs the reindex
                # module that not every node has.
                self.client.indices.refresh(index=self.index, ignore_unavailable=True)
                resp = self.client.search(
                    index=self.index, query=query, size=1000, source=False, ignore_unavailable=True
                )
                ids = [h["_id"] for h in resp["hits"]["hits"]]
                if not ids:
                    return ended
                self.client.bulk(
                    operations=[{"delete": {"_index": self.index, "_id": i}} for i in ids], refresh=True
                )
                ended += len(ids)

    # -- API tokens ------------------------------------------------------------------------------

    def _token_hits(self, username: str, name: str | None = None) -> builtins.list[dict[str, Any]]:
        filters: list[dict[str, Any]] = [{"term": {"type": "token"}}, {"term": {"username": username}}]
        if name is not None:
            filters.append({"term": {"name": name}})
        with self._es(f"list the tokens of {username!r}"):
            self.client.indices.refresh(index=self.index, ignore_unavailable=True)
            resp = self.client.search(
                index=self.index,
                query={"bool": {"filter": filters}},
                sort=[{"created": "asc"}, {"name": {"order": "asc", "unmapped_type": "keyword"}}],
                size=_MAX_LIST,
                ignore_unavailable=True,
            )
        return list(resp["hits"]["hits"])

    def create_token(self, username: str, name: str) -> str:
        """A new API token for the user: returned once, stored only as its SHA-256."""
        if not TOKEN_NAME_RE.match(name):
            raise InvalidUser(
                f"token name {name!r}: 1-64 letters, digits, '.', '_' or '-' (e.g. 'collector-q1')"
            )
        src, _, _ = self._require(username)
        if src.get("disabled"):
            raise InvalidUser(f"user {username!r} is disabled; `hcm-soc users enable {username}` first")
        if self._token_hits(username, name):
            raise TokenExists(
                f"user {username!r} has a token named {name!r} already; revoke it "
                f"(`hcm-soc users revoke {username} {name}`) or choose another name"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock().isoformat()
        doc = {
            "type": "token",
            "@timestamp": now,
            "username": username,
            "name": name,
            "created": now,
            "last_used": None,
            "hint": token[:8] + "…",
        }
        with self._es(f"create token {name!r} for {username!r}"):
            self.client.index(
                index=self.index, id=_token_doc_id(token), document=doc, op_type="create", refresh="wait_for"
            )
        return token

    def verify_token(self, token: str) -> User | None:
        """The enabled user a token belongs to, else None; records `last_used` (at most once a minute)."""
        if not TOKEN_RE.match(token):
            return None
        doc_id = _token_doc_id(token)
        with self._es("read an API token"):
            try:
                src = dict(self.client.get(index=self.index, id=doc_id)["_source"])
            except NotFoundError:
                return None
        if src.get("type") != "token":
            return None
        found = self._get_user_doc(src["username"])
        if found is None or found[0].get("disabled"):
            return None
        now = self.clock()
        last_used = _dt(src.get("last_used"))
        if last_used is None or now - last_used >= TOUCH_EVERY:
            with self._es("record an API token's use"):
                try:
                    self.client.update(index=self.index, id=doc_id, doc={"last_used": now.isoformat()})
                except NotFoundError:
                    return None  # revoked in the meantime
                except ConflictError:
                    pass
        return self._user(found[0])

    def list_tokens(self, username: str) -> builtins.list[ApiToken]:
        self._require(username)
        out = []
        for hit in self._token_hits(username):
            s = hit["_source"]
            created = _dt(s["created"])
            assert created is not None
            out.append(
                ApiToken(s["username"], s["name"], created, _dt(s.get("last_used")), s.get("hint", ""))
            )
        return out

    def revoke_token(self, username: str, name: str) -> None:
        """Delete the user's token of that name; it stops working at once."""
        hits = self._token_hits(username, name)
        if not hits:
            raise TokenNotFound(
                f"user {username!r} has no token named {name!r}; `hcm-soc users tokens {username}` lists them"
            )
        for hit in hits:
            self._delete(hit["_id"])


def _username_message(username: str) -> str:
    try:
        _check_username(username)
    except ValueError as e:
        return str(e)
    return f"{username!r}: not a valid user name"
