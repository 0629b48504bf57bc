"""reasongen: reasoning drafts for multilingual SFT datasets.

The pipeline lives in the sibling packages, one folder per stage of a record's path:
``storage`` (ingest, tables), ``generation`` (restructure, prompts, backends, drafts),
``workers`` (Celery fan-out in chunks), ``training`` (build the SFT set, train, plot) and ``cli``.
"""

__version__ = "0.1.0"
