"""The acknowledgement link of a notice e-mail (`/ack?token=…`).

The token proves which incident the e-mail was about; the session proves who clicks. Someone not
logged in is sent to the login page and brought back here. A logged-in user who may see the
incident (an owner of one of its departments, or the security center) acknowledges it as
themselves (`user:<name>`, with a comment saying where it came from) and lands on the incident.
An invalid or expired link gets a page that says so; an owner of another department gets the
same 404 as for an incident that does not exist.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hcm_soc.notify.tokens import InvalidToken, load_secret, verify_ack_token
from hcm_soc.web.auth import get_principal
from hcm_soc.web.pages.common import see_other, services_of
from hcm_soc.web.pages.incidents import visible_incident
from hcm_soc.web.templating import render

router = APIRouter()

ACK_COMMENT = "acknowledged from the e-mail link"


@router.get("/ack", response_class=HTMLResponse)
def acknowledge_link(request: Request, token: str = "") -> Response:
    services = services_of(request)
    try:
        claim = verify_ack_token(load_secret(services.settings), token, now=services.clock())
    except InvalidToken as e:
        return render(request, "ack_invalid.html", {"reason": str(e)}, status_code=400)
    principal = get_principal(request)
    if principal is None:
        target = "/ack?token=" + quote(token, safe="")
        return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303)
    incident = visible_incident(services, principal, claim.incident_id)
    actor = f"user:{principal.username}"
    if incident.status == "new":
        services.incidents.acknowledge(incident.id, actor=actor)
        services.incidents.comment(incident.id, ACK_COMMENT, actor=actor)
    return see_other(f"/incidents/{incident.id}", msg="ack_link")
