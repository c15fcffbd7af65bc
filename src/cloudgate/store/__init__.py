"""The store: SQLAlchemy models, Alembic migrations and repositories (SQLite or PostgreSQL).

`Store.open(url)` gives the repositories; `await upgrade(url)` brings the schema to head.
"""

from cloudgate.store.activity import ActivityRepository
from cloudgate.store.apikeys import CreatedKey, KeyInfo, KeyRepository
from cloudgate.store.common import UNSET, Conflict, Invalid, NotFound, StoreError
from cloudgate.store.directory import TeamInfo, TeamRepository, UserInfo, UserRepository
from cloudgate.store.engine import create_engine, create_sessionmaker, data_dir, database_url
from cloudgate.store.keys import NewKey, generate_key, hash_key
from cloudgate.store.migrate import current_revision, downgrade, head_revision, upgrade
from cloudgate.store.policies import BudgetRepository, LimitRepository
from cloudgate.store.reports import BudgetUse, DeploymentStats, Overview, Reports, SpendPoint, TrafficPoint
from cloudgate.store.repositories import Store
from cloudgate.store.spend import SpendReportRow, SpendRepository, SqlSpendSink

__all__ = [
    "UNSET",
    "ActivityRepository",
    "BudgetRepository",
    "BudgetUse",
    "Conflict",
    "CreatedKey",
    "DeploymentStats",
    "Invalid",
    "KeyInfo",
    "KeyRepository",
    "LimitRepository",
    "NewKey",
    "NotFound",
    "Overview",
    "Reports",
    "SpendPoint",
    "SpendReportRow",
    "SpendRepository",
    "SqlSpendSink",
    "Store",
    "StoreError",
    "TeamInfo",
    "TeamRepository",
    "TrafficPoint",
    "UserInfo",
    "UserRepository",
    "create_engine",
    "create_sessionmaker",
    "current_revision",
    "data_dir",
    "database_url",
    "downgrade",
    "generate_key",
    "hash_key",
    "head_revision",
    "upgrade",
]
