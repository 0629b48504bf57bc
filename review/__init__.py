"""The review stage: drafts wait as ``pending`` until a person approves, rejects or edits them.

rules (legal transitions) -> service (one versioned change + its audit event) -> bulk / exchange
(many changes, each checked) -> interactive (the terminal loop). Only approved drafts reach a build.
"""
