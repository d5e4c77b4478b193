"""Storage: SQLAlchemy 2 (async) models, the database handle and Alembic migrations."""

from medic_core.store.database import Database, is_transient_db_error

__all__ = ["Database", "is_transient_db_error"]
