"""One job's life: the domain types, input staging, the runner (stage -> queue -> track -> collect), outputs and
their delivery, progress, the live-job registry and warmup. Talks to ComfyUI only through `comfy/`; no HTTP here.
"""
