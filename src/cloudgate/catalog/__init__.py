"""The model catalog: ids per platform, aliases, Vertex regions and prices, read from data."""

from cloudgate.catalog.catalog import (
    Catalog,
    LongContext,
    ModelEntry,
    Prices,
    bedrock_profile_prefix,
    default_catalog,
)

__all__ = ["Catalog", "LongContext", "ModelEntry", "Prices", "bedrock_profile_prefix", "default_catalog"]
