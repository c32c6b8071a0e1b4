"""The console's pages (server-rendered HTML, htmx for partial refresh): overview, the incident
queue and incident page, the owner's acknowledgement link, and the administrator's pages.

Every page depends on `page_user(...)` (login redirect, role check, and the CSRF check of
state-changing requests), calls the services on `app.state.services`, and renders through
`hcm_soc.web.templating.render`. A state change answers with a redirect (post/redirect/get) or,
for an htmx request, with the partial it replaces.
"""

from fastapi import APIRouter

from hcm_soc.web.pages import account, admin, incidents, overview, owner

router = APIRouter(include_in_schema=False)
router.include_router(overview.router)
router.include_router(incidents.router)
router.include_router(owner.router)
router.include_router(admin.router)
router.include_router(account.router)

__all__ = ["router"]
