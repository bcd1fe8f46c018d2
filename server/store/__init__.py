"""PostgreSQL access: connection pool, migrations, embedded server, repositories.

Modules that need the database get an ``asyncpg.Pool`` passed in; nothing here is global.
"""
