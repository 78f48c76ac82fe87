"""Alembic environment of the store.

At run time `mmnar_app.store.open_store` builds the Alembic Config in code and hands over an open
connection already inside its write transaction (``config.attributes["connection"]``), so the
version check and every migration commit or roll back together. For development, Alembic commands
work through a Config built in code, e.g. a new revision against a scratch database::

    from alembic import command
    from mmnar_app.store.core import alembic_config
    command.upgrade(alembic_config("sqlite:////tmp/dev.sqlite3"), "head")
    command.revision(alembic_config("sqlite:////tmp/dev.sqlite3"), "add x", autogenerate=True)

Write the revision by hand afterwards (keep both SQLite and PostgreSQL working).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mmnar_app.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite goes through batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
