"""Checks the audit log's hash chain (and says which entry breaks it).

    python -m mmnar_app.store.verify [--database-url URL | --data-dir DIR]

Prints a JSON report (entries, head hash, breaks); exit status 0 when the chain is intact, 1 when it is
broken, 2 when the database cannot be opened. Record the head hash elsewhere to detect a rewrite later.
"""

from __future__ import annotations

import argparse
import json
import sys

from .chain import ChainReport, verify_chain
from .core import Store, StoreError, open_store


def verify_store(store: Store) -> ChainReport:
    """The chain report of `store`'s audit log, read in one transaction."""
    store._check_open()
    with store._engine.connect() as conn, conn.begin():
        return verify_chain(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmnar_app.store.verify", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--database-url", help="SQLAlchemy URL (default: MMNAR_DATABASE_URL, else SQLite in the data "
                                              "folder)")
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
