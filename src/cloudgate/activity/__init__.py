"""The activity log: one redacted entry per request, written in batches off the request path, kept
`activity.retention_days` days, in the database and/or rotating JSON-lines files.

`ActivityLog` is the writer (and a gateway record sink), `ActivityRetention` the deleting job,
`ActivityEntry` and `ActivityFilter` what the store's `activity` repository reads and writes.
"""

from cloudgate.activity.entry import ActivityEntry, ActivityFilter
from cloudgate.activity.retention import ActivityRetention
from cloudgate.activity.writer import ActivityLog, activity_directory

__all__ = ["ActivityEntry", "ActivityFilter", "ActivityLog", "ActivityRetention", "activity_directory"]
