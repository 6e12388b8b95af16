"""A Python client for comfyui-api, needing only httpx: `Client` (blocking) and `AsyncClient` run, submit, follow,
cancel and download jobs; `ComfyUIClient` / `AsyncComfyUIClient` talk to a bare ComfyUI (or the `/comfyui` door);
`verify_webhook` checks a signed delivery.

    from comfyui_api.client import Client

    with Client("http://localhost:3000", api_key="...") as client:
        job = client.submit(graph, set={"3.inputs.seed": 42})
        for event in client.events(job.id):
            print(event.name, event.data.get("percent", ""))
        client.download(job.id, "out/")
"""

from comfyui_api.client.async_client import AsyncClient
from comfyui_api.client.comfyui import AsyncComfyUIClient, ComfyUIClient
from comfyui_api.client.errors import ApiError, ClientError, JobFailed, ServerUnreachable, WebhookVerificationError
from comfyui_api.client.model import Event, Job, JobPage, Output, Result
from comfyui_api.client.sync_client import Client
from comfyui_api.client.webhooks import verify_webhook
from comfyui_api.client.workflow import apply_inputs, apply_sets, load_workflow

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncComfyUIClient",
    "Client",
    "ClientError",
    "ComfyUIClient",
    "Event",
    "Job",
    "JobFailed",
    "JobPage",
    "Output",
    "Result",
    "ServerUnreachable",
    "WebhookVerificationError",
    "apply_inputs",
    "apply_sets",
    "load_workflow",
    "verify_webhook",
]
