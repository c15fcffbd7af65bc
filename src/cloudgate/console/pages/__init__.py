"""The console's pages and its JSON API, one module per part of the console.

Each handler reads through the admin API's handlers (`AdminAPI.run`, so input is checked
exactly as the REST API checks it) or `cloudgate.store.reports.Reports`, and renders HTML with
`console.html` and `console.charts`.
"""

from cloudgate.console.pages.budgets import budgets, delete_budget, delete_limits, set_budget, set_limits
from cloudgate.console.pages.common import error_page
from cloudgate.console.pages.deployments import api_deployments, deployments, deployments_live
from cloudgate.console.pages.directory import (
    api_revoke_key,
    create_key,
    create_team,
    create_user,
    delete_team,
    delete_user,
    key_detail,
    keys,
    revoke_key,
    rotate_key,
    team_detail,
    teams,
    update_key,
    update_team,
    update_user,
    user_detail,
    users,
)
from cloudgate.console.pages.login import home, login, login_form, logout
from cloudgate.console.pages.logs import log_detail, logs, session_timeline
from cloudgate.console.pages.overview import api_overview, overview

__all__ = [
    "api_deployments",
    "api_overview",
    "api_revoke_key",
    "budgets",
    "create_key",
    "create_team",
    "create_user",
    "delete_budget",
    "delete_limits",
    "delete_team",
    "delete_user",
    "deployments",
    "deployments_live",
    "error_page",
    "home",
    "key_detail",
    "keys",
    "log_detail",
    "login",
    "login_form",
    "logout",
    "logs",
    "overview",
    "revoke_key",
    "rotate_key",
    "session_timeline",
    "set_budget",
    "set_limits",
    "team_detail",
    "teams",
    "update_key",
    "update_team",
    "update_user",
    "user_detail",
    "users",
]
