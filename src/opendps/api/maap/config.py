"""``GET /api/environment/config``: the document ``MAAP()`` bootstraps from (reference §1.2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from opendps import __version__
from opendps.api.deps import base_url

router = APIRouter(include_in_schema=False)

#: The token every maap-py client sends in its ``token`` header. maap-api-nasa ignores it
#: and so do we; it must not start with "Bearer" or "Basic", or 4.x sends it as
#: ``Authorization`` and it would be taken for a user's token.
CLIENT_TOKEN = "opendps"

ENDPOINTS = {
    "processes_ogc": "ogc/processes",
    "deployment_jobs_ogc": "ogc/deploymentJobs",
    "jobs_ogc": "ogc/jobs",
    "dps_job": "dps/job",
    "algorithm_register": "mas/algorithm",
    "algorithm_build": "dps/algorithm/build",
    "mas_algo": "mas/algorithm",
    "member": "members/self",
    "member_dps_token": "members/dps/userImpersonationToken",
    "requester_pays": "members/self/awsAccess/requesterPaysBucket",
    "edc_credentials": "members/self/awsAccess/edcCredentials/{endpoint_uri}",
    "s3_signed_url": "members/self/presignedUrlS3/{bucket}/{key}",
    "workspace_bucket_credentials": "members/self/awsAccess/workspaceBucket",
    "wmts": "wmts",
    "search_granule_url": "cmr/granules",
    "search_collection_url": "cmr/collections",
}


def client_config(base: str) -> dict[str, Any]:
    """maap-py uses only the *path* of ``maap_api_root``; scheme and host come from the URL
    it fetched this document from."""
    return {
        "service": {
            "maap_api_root": f"{base}/api",
            "maap_token": CLIENT_TOKEN,
            "tiler_endpoint": f"{base}/api/tiler",
            "service_name": "opendps",
            "service_version": __version__,
        },
        "maap_endpoint": dict(ENDPOINTS),
        "search": {"indexed_attributes": []},
    }


@router.get("/api/environment/config")
def environment_config(request: Request) -> dict[str, Any]:
    return client_config(base_url(request))


@router.get("/api/environment/config/{ade_host:path}")
def environment_config_for_host(ade_host: str, request: Request) -> dict[str, Any]:
    """maap-api-nasa also serves the document per ADE host; there is one environment here."""
    return client_config(base_url(request))
