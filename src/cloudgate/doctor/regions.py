"""Which region values are real: Vertex AI locations and the AWS regions Bedrock runs in."""

from __future__ import annotations

import difflib
import functools

from cloudgate.catalog import Catalog

# Google Cloud locations with a Vertex AI endpoint, plus the global and multi-region ones.
# Google adds regions now and then: a value outside this list only earns a warning.
VERTEX_LOCATIONS: frozenset[str] = frozenset(
    {
        "global", "us", "eu",
        "us-central1", "us-east1", "us-east4", "us-east5", "us-south1",
        "us-west1", "us-west2", "us-west3", "us-west4",
        "northamerica-northeast1", "northamerica-northeast2",
        "southamerica-east1", "southamerica-west1",
        "europe-central2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west2",
        "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9",
        "europe-west10", "europe-west12",
        "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
        "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2",
        "australia-southeast1", "australia-southeast2",
        "me-central1", "me-central2", "me-west1", "africa-south1",
    }
)  # fmt: skip


def vertex_locations(catalog: Catalog) -> frozenset[str]:
    """Every Vertex location cloudgate knows: the list above and any the catalog names."""
    return VERTEX_LOCATIONS | {r for e in catalog.entries for r in e.vertex_regions}


def is_vertex_location(region: str, catalog: Catalog) -> bool:
    """Whether `region` is a Vertex AI location (as far as cloudgate knows)."""
    return region in vertex_locations(catalog)


@functools.cache
def aws_regions() -> frozenset[str]:
    """AWS region names, from botocore's own endpoint data (EC2 runs in every region)."""
    import botocore.session

    session = botocore.session.Session()
    regions: set[str] = set()
    for partition in ("aws", "aws-us-gov", "aws-cn"):
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def is_aws_region_shape(region: str) -> bool:
    """Whether `region` looks like an AWS region name (`us-east-1`), known to botocore or not."""
    parts = region.split("-")
    return len(parts) >= 3 and parts[-1].isdigit() and all(p.isalpha() for p in parts[:-1])


def closest(value: str, known: frozenset[str]) -> str | None:
    """The known value a mistyped one most likely meant, if any is close."""
    match = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.7)
    return match[0] if match else None
