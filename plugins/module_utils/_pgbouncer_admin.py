# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer's admin console and the few PostgreSQL queries pgbouncer_tenant needs, through psycopg 3.

Both connect on demand and close at once: a module run holds no connection across steps. Passwords
are passed to libpq as parameters, never in a connection string that could end up in an error.
"""

from __future__ import annotations

from typing import Any, Optional

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import DockerEngine, EngineError
from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter, WaitTimeout

try:
    import psycopg
    from psycopg import sql

    HAS_PSYCOPG = True
except ImportError:  # pragma: no cover - reported by the module with missing_required_lib
    HAS_PSYCOPG = False


class ConsoleError(Exception):
    """PgBouncer or PostgreSQL could not be reached or refused a command."""


def _connect(*, host: str, port: int, user: str, password: Optional[str], dbname: str, what: str,
             timeout: int = 5) -> Any:
    try:
        # The admin console speaks only the simple query protocol: ClientCursor uses it.
        return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                               connect_timeout=timeout, autocommit=True, cursor_factory=psycopg.ClientCursor,
                               application_name="rotor.vps")
    except psycopg.Error as exc:
        raise ConsoleError("could not connect to %s at %s port %s as %s: %s"
                           % (what, host, port, user, str(exc).strip())) from None


class AdminConsole:
    """RELOAD, SHOW DATABASES and SHOW USERS on PgBouncer's ``pgbouncer`` database."""

    def __init__(self, *, host: str, port: int, user: str, password: Optional[str]):
        self.params = dict(host=host, port=port, user=user, password=password, dbname="pgbouncer",
                           what="PgBouncer's admin console")

    def _rows(self, command: str) -> list[dict[str, Any]]:
        with _connect(**self.params) as conn:
            try:
                cursor = conn.execute(command)
            except psycopg.Error as exc:
                raise ConsoleError("PgBouncer refused %s: %s" % (command, str(exc).strip())) from None
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def execute(self, command: str, *, wait: float = 0, waiter: Optional[Waiter] = None) -> list[dict[str, Any]]:
        """The rows of one admin command, retrying the connection for ``wait`` seconds (a container
        that just started has no socket yet)."""
        if wait <= 0:
            return self._rows(command)
        failures: list = []

        def attempt() -> Optional[list]:
            try:
                with _connect(**self.params):
                    pass
            except ConsoleError as exc:
                failures.append(exc)
                return None
            return []

        try:
            (waiter or Waiter(initial=0.1, cap=1.0)).until(attempt, lambda ok: ok is not None,
                                                           what="PgBouncer's admin console", timeout=wait)
        except WaitTimeout:
            raise failures[-1] from None
        return self._rows(command)

    def config(self) -> dict[str, str]:
        """SHOW CONFIG, setting -> value."""
        return {row["key"]: row["value"] for row in self._rows("SHOW CONFIG")}

    def reload(self) -> None:
        """Make PgBouncer read its configuration and auth file again."""
        self._rows("RELOAD")

    def databases(self) -> dict[str, dict[str, Any]]:
        """SHOW DATABASES, by name."""
        return {row["name"]: row for row in self._rows("SHOW DATABASES")}

    def users(self) -> set[str]:
        """The users PgBouncer knows (SHOW USERS)."""
        return {row["name"] for row in self._rows("SHOW USERS")}


class PostgresServer:
    """The tenant role's stored verifier, max_connections, and setting a role's password to a verifier."""

    def __init__(self, *, host: str, port: int, user: str, password: Optional[str], dbname: str):
        self.params = dict(host=host, port=port, user=user, password=password, dbname=dbname, what="PostgreSQL")

    def role_verifier(self, role: str) -> tuple[bool, Optional[str]]:
        """(role exists, its stored password or None). Needs a superuser: pg_authid is not public."""
        with _connect(**self.params) as conn:
            try:
                row = conn.execute("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s",
                                   (role,)).fetchone()
            except psycopg.Error as exc:
                raise ConsoleError("could not read the password of role %s (login_user must be a superuser): %s"
                                   % (role, str(exc).strip())) from None
        return (row is not None, row[0] if row else None)

    def max_connections(self) -> int:
        """The server's max_connections."""
        with _connect(**self.params) as conn:
            return int(conn.execute("SHOW max_connections").fetchone()[0])

    def set_role_verifier(self, role: str, verifier: str) -> None:
        """ALTER ROLE ... PASSWORD '<verifier>': PostgreSQL stores a SCRAM verifier as given."""
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))
        with _connect(**self.params) as conn:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                # The statement holds the verifier: report the server's message only.
                raise ConsoleError("PostgreSQL refused to set the password of role %s: %s"
                                   % (role, exc.diag.message_primary or type(exc).__name__)) from None


class ReloadLog:
    """PgBouncer's own verdict on a RELOAD, read from its container's log.

    PgBouncer answers RELOAD with success even when the new configuration fails to load: it logs
    "config file loading failed" and keeps what it had loaded up to the bad line. Only its log says so.
    """

    MARK = "RELOAD command issued"
    FAILED = "config file loading failed"

    def __init__(self, *, docker_host: str, container: str, timeout: float = 2.0, waiter: Optional[Waiter] = None):
        self.docker_host = docker_host
        self.container = container
        self.timeout = timeout
        self.waiter = waiter or Waiter(initial=0.05, cap=0.05)

    def _lines(self, since: float) -> list[str]:
        engine = DockerEngine(self.docker_host, timeout=10)
        try:
            return engine.logs(self.container, since=since).splitlines()
        except EngineError as exc:
            raise ConsoleError("PgBouncer's log_container: %s" % exc) from None
        finally:
            engine.close()

    def failure(self, since: float) -> Optional[str]:
        """Why the last RELOAD logged after ``since`` failed; None when it loaded cleanly.

        Waits (at most ``timeout``) for the RELOAD line to reach the log, then reads once more, since
        Docker copies the log asynchronously.
        """
        try:
            self.waiter.until(lambda: self._lines(since), lambda lines: any(self.MARK in line for line in lines),
                              what="the RELOAD line in PgBouncer's log", timeout=self.timeout)
        except WaitTimeout:
            raise ConsoleError("PgBouncer's log (container %s) shows no %r within %.0f s of the reload"
                               % (self.container, self.MARK, self.timeout)) from None
        # Docker copies the log asynchronously: read once more for lines logged right after the mark.
        self.waiter.sleep(0.1)
        lines = self._lines(since)
        marks = [index for index, line in enumerate(lines) if self.MARK in line]
        after = lines[marks[-1] + 1:] if marks else lines
        if not any(self.FAILED in line for line in after):
            return None
        errors = [line.split(" ERROR ", 1)[1].strip() for line in after if " ERROR " in line]
        return "; ".join(errors) or self.FAILED
