"""Provider batch mode (issue 14): the same requests as online mode, sent as batch input files at half price.

``requests`` builds request lines and splits them under the provider's limits, ``results`` reads output and
error lines into drafts (or into the next request: a retry, a structured-output fallback, a repair), and
``prices`` prices tokens at the online or the batch rate. The orchestration (database, provider calls,
polling) is in :mod:`workers.provider_jobs`.
"""
