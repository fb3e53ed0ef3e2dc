"""Extensions, created once and bound to the app in create_app (avoids import cycles)."""

import functools
import select

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
babel = Babel()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite: WAL so readers never block the writer, a long busy wait so writers queue, foreign keys on."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def check_connections_before_use(engine: Engine) -> None:
    """A server database's pooled connection is checked as a request takes it (the pool's checkout), without a round
    trip: a server that ended the connection (a restart, a failover, pg_terminate_backend) told it so on its socket,
    which is then readable. Only then is it pinged, which reads what the server said; if the ping fails, the pool
    replaces the connection before the request gets it (DisconnectionError: the pool connects anew, up to three times).
    SQLAlchemy's pool_pre_ping would ping every time: a round trip before every request."""
    if engine.dialect.name != "sqlite":
        event.listen(engine, "checkout", functools.partial(_check_connection, engine.dialect))


def _check_connection(dialect, dbapi_connection, _record, _proxy) -> None:
    try:
        poller = select.poll()  # not select.select, which fails on descriptors past 1023
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
        if not poller.poll(0):
            return  # idle and nothing from the server: alive, as far as the server has said
        dialect.do_ping(dbapi_connection)  # a notice, a changed setting, or the server's goodbye: read it
    except Exception as exc:  # closed on our side, or the server's error: the pool replaces it
        raise DisconnectionError(f"the database connection was ended: {exc}") from exc


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


def execute_core(statement, params=None):
    """Run a Core statement (built on a table, not a model) on the session's connection, in the session's transaction.

    What Session.execute does for such a statement (no autoflush, no ORM loading), without its ORM bookkeeping, which
    costs more than a short statement's own work on the hot paths (callbacks, link creation)."""
    return db.session.connection().execute(statement, params)


@functools.cache
def _insert_ignoring_conflicts(model, dialect: str, returning):
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__  # a Core statement: the ORM's bulk-insert layer costs more than the INSERT itself
    stmt = insert(table).on_conflict_do_nothing()
    return stmt.returning(table.c[returning.key]) if returning is not None else stmt


def insert_ignoring_conflicts(model, returning=None):
    """INSERT … ON CONFLICT DO NOTHING [RETURNING column] for the session's database (PostgreSQL and SQLite both have
    it), built once per database: execute it with the row's values as parameters."""
    return _insert_ignoring_conflicts(model, dialect_name(), returning)
