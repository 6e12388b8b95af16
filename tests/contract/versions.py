"""The ComfyUI release where each wire change measured between 0.3.64 and 0.33.0 appeared (approximate, from
ComfyUI's own sources; only 0.3.64 and 0.33.0 were run). Contract tests ask `target.at_least(<name>)`."""

from __future__ import annotations

MISSING_NODE_TYPE = "0.12"  # unknown/missing class_type -> missing_node_type (was invalid_prompt)
CYCLE_NODE_ERRORS = "0.20"  # a cycle lists dependency_cycle node errors
UUID_PROMPT_IDS = "0.25"  # prompt_id must be a canonical UUID; audio names lose their trailing underscore
SAFE_VIEW_HEADERS = "0.28"  # /view serves script-capable types as attachments, with nosniff
MODERN = "0.33"  # the rest of what 0.33.0 changed: create_time, list prompt 500, repr in details, object_info keys,
# /features and /system_stats keys, Sec-Fetch-Site refusals
