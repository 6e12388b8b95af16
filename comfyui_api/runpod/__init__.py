"""The RunPod serverless worker (`comfyui-api runpod`): one more front door over the same runtime. The `runpod` SDK
is imported only by `worker.main`, behind the `[runpod]` extra."""
