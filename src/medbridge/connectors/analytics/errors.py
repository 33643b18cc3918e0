"""Analytics connector errors.

AnalyticsError                    code
 +-- ExportDirectoryError         analytics.directory   the directory cannot hold an export
                                                        (a file, unwritable, a foreign state)
"""

from __future__ import annotations


class AnalyticsError(Exception):
    code = "analytics.error"


class ExportDirectoryError(AnalyticsError):
    code = "analytics.directory"
