"""Dataset ingest: read -> validate -> language -> hash -> bulk upsert (see pipeline.py)."""

from storage.ingest.pipeline import IngestOptions, Stages, ingest_file
from storage.ingest.types import IngestSummary, Rejection, SourceRecord

__all__ = ["IngestOptions", "IngestSummary", "Rejection", "SourceRecord", "Stages", "ingest_file"]
