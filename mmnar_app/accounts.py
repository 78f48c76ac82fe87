"""Manage the app's users from the server's shell (the database of `MMNAR_DATABASE_URL` / `MMNAR_DATA_DIR`,
the same one the app uses):

    python -m mmnar_app.accounts add USER --role clinician|reviewer|admin [--no-password]
    python -m mmnar_app.accounts list
    python -m mmnar_app.accounts disable USER | enable USER | unlock USER   (unlock: ends the name's sign-in back-off)
    python -m mmnar_app.accounts set-role USER ROLE
    python -m mmnar_app.accounts set-password USER

Passwords are read from a prompt (twice) on a terminal, or as one line from standard input otherwise
(`printf '%s\\n' "$PASSWORD" | python -m mmnar_app.accounts add ...`); never from the command line, where
other users and the shell history would see them. `--no-password` adds a user who signs in through
OpenID Connect (the row sets their role). Every change is written to the audit log as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from mmnar_app.store.users import MIN_PASSWORD_LENGTH, ROLES


def _read_password(args) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise SystemExit("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass(f"Password for {args.user} (at least {MIN_PASSWORD_LENGTH} characters): ")
    if getpass.getpass("Password again: ") != first:
        raise SystemExit("the two passwords differ: nothing changed")
    return first


def _operator() -> str:
    try:
        return "cli:" + getpass.getuser()
    except Exception:
        return "cli:unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_app.accounts",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL (default: MMNAR_DATABASE_URL, else SQLite in MMNAR_DATA_DIR)"
    )
    parser.add_argument("--data-dir", help="folder of the default SQLite database (default: MMNAR_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user")
    add.add_argument("user")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--no-password", action="store_true", help="an OpenID Connect user: a role, no local password")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub.add_parser("list", help="list the users")
    for name in ("disable", "enable", "unlock"):
        sub.add_parser(name, help=f"{name} a user").add_argument("user")
    role = sub.add_parser("set-role", help="change a user's role")
    role.add_argument("user")
    role.add_argument("role", choices=ROLES)
    password = sub.add_parser("set-password", help="set a new password (also unlocks)")
    password.add_argument("user")
    password.add_argument("--password-stdin", action="store_true")
    args = parser.parse_args(argv)

    from mmnar_app.logging_setup import configure_logging
    from mmnar_app.settings import AppSettings
    from mmnar_app.store import StoreError, open_store
    from mmnar_app.store.users import UserStore

    configure_logging()
    settings = AppSettings.from_env()
    try:
        store = open_store(args.database_url or settings.database_url, data_dir=args.data_dir or settings.data_dir)
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    users, operator = UserStore(store), _operator()
    try:
        if args.command == "list":
            from mmnar_app.admin import user_rows

            rows = user_rows(users.list())
            if not rows:
                print(f"no users in {store.url}")
            for row in rows:
                print(
                    f"{row['user']:<32} {row['role']:<10} {row['status']:<9} {row['sign-in']:<20} "
                    f"last sign-in {row['last sign-in (UTC)'] or 'never'}"
                )
            return 0
        if args.command == "add":
            secret = None if args.no_password else _read_password(args)
            user = users.add(args.user, args.role, secret)
            detail = f"{user.username} as {user.role}" + ("" if user.has_password else " (no local password)")
            store.record(action="user-add", user=operator, detail=detail)
            print(f"added {user.username} as {user.role}" + ("" if user.has_password else " (OpenID Connect only)"))
            return 0
        if args.command == "set-password":
            user = users.set_password(args.user, _read_password(args))
            store.record(action="user-set-password", user=operator, detail=user.username)
            print(f"password of {user.username} set")
            return 0
        if args.command == "set-role":
            before = users.get(args.user)
            if before is None:
                raise StoreError(f"no user {args.user!r}")
            user = users.set_role(args.user, args.role)
            store.record(
                action="user-change-role", user=operator, detail=f"{user.username}: {before.role} -> {user.role}"
            )
            print(f"{user.username} is now {user.role}")
            return 0
        change = {
            "disable": lambda u: users.set_disabled(u, True),
            "enable": lambda u: users.set_disabled(u, False),
            "unlock": users.unlock,
        }[args.command]
        user = change(args.user)
        store.record(action=f"user-{args.command}", user=operator, detail=user.username)
        print(f"{user.username}: {args.command}d" if args.command != "unlock" else f"{user.username}: unlocked")
        return 0
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    from mmnar_app.store.permissions import restrict_umask

    restrict_umask()  # the database and its -wal/-shm hold password hashes: 0600
    sys.exit(main())
