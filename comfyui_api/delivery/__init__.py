"""Getting a job's events and results to the people waiting for them: signed per-job webhooks (`webhooks`),
Server-Sent Events (`sse`), forwarded system events (`system_events`); `signing` and `sender` are their plumbing.
"""
