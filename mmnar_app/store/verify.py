"""Checks the hash chains of the audit log and of the saved assessments (and says what breaks them).

    python -m mmnar_app.store.verify [--database-url URL | --data-dir DIR]

Prints a JSON report per chain (entries, head hash, breaks); exit status 0 when both chains are intact, 1
when either is broken, 2 when the database cannot be opened. Record the head hashes elsewhere to detect a
rewrite from the start later.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from .assessment_chain import verify_assessment_chain
from .chain import ChainReport, verify_chain
from .core import Store, StoreError, open_store


@dataclass
class IntegrityReport:
    """Both chains: `audit` (the audit log) and `assessments`; `breaks` lists the audit log's first."""

    audit: ChainReport
    assessments: ChainReport

    @property
    def ok(self) -> bool:
        return self.audit.ok and self.assessments.ok

    @property
    def breaks(self) -> list[str]:
        return self.audit.breaks + self.assessments.breaks

    def to_dict(self) -> dict:
        return {"ok": self.ok, "audit_log": self.audit.to_dict(), "assessments": self.assessments.to_dict()}


def verify_store(store: Store) -> IntegrityReport:
    """The chain reports of `store`'s audit log and assessments, read in one transaction."""
    store._check_open()
    with store._engine.connect() as conn, conn.begin():
        return IntegrityReport(audit=verify_chain(conn), assessments=verify_assessment_chain(conn))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmnar_app.store.verify", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--database-url", help="SQLAlchemy URL (default: MMNAR_DATABASE_URL, else SQLite in the data folder)"
    )
    group.add_argument("--data-dir", help="folder of the SQLite database mmnar.sqlite3")
    args = parser.parse_args(argv)
    try:
        with open_store(args.database_url or None, data_dir=args.data_dir or None) as store:
            report = verify_store(store)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    from .permissions import restrict_umask

    restrict_umask()
    raise SystemExit(main())
