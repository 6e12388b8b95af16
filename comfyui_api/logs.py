"""How the process logs: plain text (the default) or, with LOG_FORMAT=json, one JSON object a line with `time`,
`level`, `logger`, `message` and, on every line logged while a job runs, its `job_id` (set by the runner in the
job's own task: asyncio copies it into every task the job starts). ComfyUI's own output is logged line by line
with its `[comfyui]` prefix, so it is JSON too.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

# The job a line is about: a context variable, so each job task (and the tasks it starts) sees its own value.
current_job: ContextVar[str | None] = ContextVar("current_job", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            record.job_id = current_job.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger for the whole process (every library's lines go through it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_JobIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # one line per request
