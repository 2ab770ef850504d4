"""``/api/members/self`` (``maap.profile.account_info``), and clear answers for the MAAP
services a DPS does not have (AWS credentials, CMR search, WMTS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from opendps.api.deps import current_user, services_of
from opendps.api.maap.common import MaapError

router = APIRouter(include_in_schema=False)


@router.get("/api/members/self")
def account_info(request: Request) -> dict[str, Any]:
    """At least ``username`` (4.x ``submitJob`` reads it; 5.x ``account_info`` returns it)."""
    services = services_of(request)
    user = current_user(request)
    record = services.accounts.get_user(user) or {}
    return {
        "id": record.get("id", 0),
        "username": user,
        "first_name": user,
        "last_name": "",
        "email": None,
        "organization": None,
        "is_admin": bool(record.get("is_admin")),
        "is_guest": services.policy.is_guest(user),
        "creation_date": record["created"].isoformat() if record.get("created") else None,
    }


_UNAVAILABLE = {
    "members/dps/userImpersonationToken": "DPS machine tokens (jobs use MAAP_PGT instead)",
    "members/self/awsAccess/requesterPaysBucket": "AWS requester-pays credentials",
    "members/self/awsAccess/edcCredentials/{endpoint_uri:path}": "Earthdata Cloud S3 credentials",
    "members/self/awsAccess/workspaceBucket": "workspace bucket credentials",
    "members/self/presignedUrlS3/{bucket}/{key:path}": "pre-signed S3 URLs",
    "cmr/{rest:path}": "CMR search (query CMR directly, e.g. with python-cmr or earthaccess)",
    "wmts/{rest:path}": "the WMTS tile service",
}


def _unavailable(what: str):  # type: ignore[no-untyped-def]
    def answer(request: Request) -> None:
        raise MaapError(
            501,
            f"{what} is a MAAP platform service that opendps does not "
            "provide; the DPS endpoints (jobs, algorithms, secrets) work",
        )

    return answer


for _path, _what in _UNAVAILABLE.items():
    router.add_api_route(
        f"/api/{_path}", _unavailable(_what), methods=["GET", "POST"], name=f"unavailable:{_path}"
    )
