"""`/api/playbooks`: the playbooks the runner would load (with the problems of the files it would
leave out), and validation of a playbook text before it is saved."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hcm_soc.playbooks.loader import Problem, parse_playbook
from hcm_soc.web.api.deps import get_services, reader, writer
from hcm_soc.web.api.schemas import ERRORS, PlaybookTextIn, ProblemOut
from hcm_soc.web.auth import Principal
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/playbooks", tags=["playbooks"], responses=ERRORS)


def problem_out(p: Any) -> ProblemOut:
    """A loader problem (playbooks or inventory: both carry a SourceLocation and a message)."""
    return ProblemOut(file=p.location.file, line=p.location.line, key=p.location.key, message=p.message)


@router.get("", summary="Playbooks (as loaded) and the problems of those left out")
def list_playbooks(
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    loaded = services.playbooks()
    return {
        "items": [p.model_dump(mode="json") for p in loaded.playbooks],
        "total": len(loaded.playbooks),
        "problems": [problem_out(p).model_dump() for p in loaded.problems],
        "files": [str(f) for f in loaded.files],
    }


@router.post("/validate", summary="Validate one playbook text (problems with line numbers)")
def validate_playbook(
    body: PlaybookTextIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    playbook, problems = parse_playbook(body.yaml, "<request>")
    found: list[Problem] = list(problems)
    if playbook is not None and (other := services.playbooks().get(playbook.id)) is not None:
        # not an error (saving it over the file is an update), but worth saying
        note = f"replaces the loaded playbook {playbook.id!r} of {other.source}"
    else:
        note = None
    return {
        "ok": playbook is not None and not found,
        "id": playbook.id if playbook is not None else None,
        "problems": [problem_out(p).model_dump() for p in found],
        "note": note,
    }
