"""Access control for the console and the API: who is calling (`Principal`, from a session
cookie or an API token), what they may do (`api_user`, `page_user`, `Principal.can_see_incident`),
CSRF protection (`check_csrf`) and the refusals (`AuthError`).

The login/logout routes are in `hcm_soc.web.auth.routes` (`router`), password hashing and the
password policy in `hcm_soc.passwords`, login throttling in `...throttle`; users,
sessions and tokens are stored by `hcm_soc.store.users`, the audit trail by `hcm_soc.store.audit`.
"""

from hcm_soc.web.auth.deps import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginRedirect,
    api_user,
    check_csrf,
    get_principal,
    page_user,
)
from hcm_soc.web.auth.principal import AuthError, Principal

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AuthError",
    "LoginRedirect",
    "Principal",
    "api_user",
    "check_csrf",
    "get_principal",
    "page_user",
]
