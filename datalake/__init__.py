"""mmlake's data contract: the Sample record, object stores, indexed shards and dataset versions.

``datalake`` imports no other mmlake package; everything else reads and writes through it.
"""

from datalake.sample import (
    KINDS,
    SCHEMA_VERSION,
    Annotation,
    Media,
    MediaPart,
    Message,
    Sample,
    SampleError,
    Source,
    TextPart,
)
from datalake.shards import ShardInfo, ShardReader, ShardWriter
from datalake.stats import VersionStats
from datalake.store import LocalStore, S3Options, S3Store, Store, open_store
from datalake.version import DatasetVersion, Lake, Manifest, VersionError, VersionWriter, parse_ref, write_version

__all__ = [
    "KINDS", "SCHEMA_VERSION", "Annotation", "Media", "MediaPart", "Message", "Sample", "SampleError", "Source",
    "TextPart", "ShardInfo", "ShardReader", "ShardWriter", "VersionStats", "LocalStore", "S3Options", "S3Store",
    "Store", "open_store", "DatasetVersion", "Lake", "Manifest", "VersionError", "VersionWriter", "parse_ref",
    "write_version",
]
