"""Persistence of the clinician app: assessments, content-addressed files, an append-only audit log, users,
and per-model counts of availability patterns (no patient data; the Model card's drift check).

SQLite in the data directory by default, PostgreSQL when ``MMNAR_DATABASE_URL`` is set; the schema is
managed by the Alembic migrations shipped in ``migrations/`` and applied by `open_store`. See
docs/storage.md.
"""

from .core import (
    Assessment,
    AssessmentSummary,
    AuditEntry,
    Store,
    StoredFile,
    StoreError,
    default_database_url,
    open_store,
    schema_head,
)
from .pattern_counts import PatternCounts, count_pattern, pattern_counts  # registers pattern_counts (0006)
from .users import ROLES, SignIn, User, UserStore  # registers the users table on the models' metadata

__all__ = [
    "Assessment",
    "AssessmentSummary",
    "AuditEntry",
    "Store",
    "StoreError",
    "StoredFile",
    "default_database_url",
    "open_store",
    "schema_head",
    "ROLES",
    "SignIn",
    "User",
    "UserStore",
    "PatternCounts",
    "count_pattern",
    "pattern_counts",
]
