"""PostgreSQL through asyncpg: the pool, migrations, and one repository module per aggregate.

All SQL lives in migrations/*.sql and queries/*.sql; asyncpg errors become StoreError.
"""
