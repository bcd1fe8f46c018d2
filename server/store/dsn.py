"""PostgreSQL connection strings: check them, swap the database name, hide the password."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from billing_oss.core.errors import ConfigError

SCHEMES = ("postgresql", "postgres")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check(dsn: str) -> str:
    """``dsn`` if it is a PostgreSQL URL this program can use; else a ``ConfigError``
    naming what is wrong (exit status 2), before anything tries to connect."""
    shown = redacted(dsn)
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid database URL {shown}: {exc}") from None
    if parts.scheme not in SCHEMES:
        got = f"scheme {parts.scheme}://" if parts.scheme else "no scheme"
        raise ConfigError(f"invalid database URL {shown}: {got}; expected "
                          "postgresql://[user[:password]@]host[:port]/database") from None
    query = _query(parts.query)
    if not parts.path.strip("/") and not query.get("dbname"):
        # No database means the user's own (often the server's maintenance database "postgres",
        # and with no host either, on whatever server listens on the default socket): too
        # easy to migrate the wrong one by accident. `postgresql:///billing` is fine.
        raise ConfigError(f"invalid database URL {shown}: no database name; name it "
                          "(postgresql://localhost/billing, postgresql:///billing for the "
                          "local socket)")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"invalid database URL {shown}: port {port} out of range")
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise ConfigError(f"invalid database URL {shown}: sslmode={sslmode!r}; expected "
                          f"one of {', '.join(SSLMODES)}")
    return dsn


def _query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def redacted(dsn: str) -> str:
    """The DSN as it may appear in a log line or an error message."""
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return dsn.split("@")[-1] if "@" in dsn else dsn
    if password is None:
        return dsn
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
