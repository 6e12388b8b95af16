"""The delivery services of one server, built and closed together by the application (`app.py`): per-job
webhooks, background (webhook / async / event-stream) jobs, and system events fed from ComfyUI's websocket.

Holds no module-level state; reads no environment (the webhook settings come in).
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyui_api.api.async_jobs import AsyncJobs
from comfyui_api.delivery.system_events import SystemEventPublisher
from comfyui_api.delivery.system_feed import AllEventsSource, ComfyEventFeed
from comfyui_api.delivery.webhooks import WebhookDelivery
from comfyui_api.jobs.runner import JobRunner
from comfyui_api.settings import WebhookSettings

_SYSTEM_EVENTS_CLOSE_S = 2.0  # what is still buffered at shutdown is status chatter: not worth holding the exit


@dataclass
class DeliveryServices:
    webhooks: WebhookDelivery
    system_events: SystemEventPublisher
    feed: ComfyEventFeed
    jobs: AsyncJobs

    @classmethod
    def build(cls, settings: WebhookSettings, runner: JobRunner, events: AllEventsSource) -> DeliveryServices:
        """Raises ValueError naming WEBHOOK_SECRET when the secret is unusable (settings validate it first)."""
        registry = runner.registry
        webhooks = WebhookDelivery(settings)
        publisher = SystemEventPublisher(settings, job_id_for=registry.job_id_for_prompt)
        return cls(webhooks, publisher, ComfyEventFeed(events, publisher), AsyncJobs(runner, webhooks))

    def start(self) -> None:
        """Start forwarding system events (a no-op unless SYSTEM_WEBHOOK_URL and SYSTEM_WEBHOOK_EVENTS are set)."""
        self.system_events.start()
        self.feed.start()

    async def aclose(self, timeout_s: float) -> None:
        """Hand on the outcomes of finished jobs, then give pending deliveries up to `timeout_s` before cancelling."""
        await self.jobs.aclose(timeout_s)
        await self.webhooks.aclose(timeout_s)
        await self.feed.aclose()
        await self.system_events.aclose(min(timeout_s, _SYSTEM_EVENTS_CLOSE_S))
