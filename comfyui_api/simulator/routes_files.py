"""HTTP handlers for files: POST /upload/image, POST /upload/mask, GET /view, GET /view_metadata/{folder}.

Follows ComfyUI's naming (`name (1).png`, content-hash reuse, overwrite), its traversal checks (400/403/404
with empty bodies) and its quirks (an unknown upload `type` or a missing sub-directory in the filename
raise, which aiohttp turns into a text 500).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import struct
from io import BytesIO
from typing import TYPE_CHECKING, Any

from aiohttp import web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

if TYPE_CHECKING:
    from comfyui_api.simulator.simulator import Simulator

_FORCED_DOWNLOAD = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}
_MAX_HEADER_BYTES = 1024 * 1024


def _same_content(filepath: str, image: Any) -> bool:
    if not os.path.exists(filepath):
        return False
    with open(filepath, "rb") as handle:
        existing = hashlib.sha256(handle.read()).hexdigest()
    incoming = hashlib.sha256(image.file.read()).hexdigest()
    image.file.seek(0)
    return existing == incoming


def _upload_dir(sim: Simulator, upload_type: Any) -> tuple[str, str]:
    if upload_type is None:
        upload_type = "input"
    directory = sim.folders.directory_by_type(upload_type)
    if directory is None:
        # ComfyUI fails here with an unbound variable, i.e. a 500.
        raise ValueError(f"unknown upload type {upload_type!r}")
    return str(directory), str(upload_type)


def _image_upload(sim: Simulator, post: Any, save: Any = None) -> web.Response:
    image = post.get("image")
    overwrite = post.get("overwrite")
    upload_dir, upload_type = _upload_dir(sim, post.get("type"))
    if not (image and image.file):  # a text field named "image" has no .file: a 500 as in ComfyUI
        return web.Response(status=400)
    filename = image.filename
    if not filename:
        return web.Response(status=400)
    subfolder = post.get("subfolder", "")
    folder = os.path.join(upload_dir, os.path.normpath(subfolder))
    filepath = os.path.abspath(os.path.join(folder, filename))
    if os.path.commonpath((upload_dir, filepath)) != upload_dir:
        return web.Response(status=400)
    if not os.path.exists(folder):
        os.makedirs(folder)
    stem, extension = os.path.splitext(filename)
    duplicate = False
    if overwrite not in ("true", "1"):
        index = 1
        while os.path.exists(filepath):
            if _same_content(filepath, image):
                duplicate = True
                break
            filename = f"{stem} ({index}){extension}"
            filepath = os.path.join(folder, filename)
            index += 1
    if not duplicate:
        if save is not None:
            save(image, post, filepath)
        else:
            with open(filepath, "wb") as handle:
                handle.write(image.file.read())
    return web.json_response({"name": filename, "subfolder": subfolder, "type": upload_type})


def _apply_mask(sim: Simulator, image: Any, post: Any, filepath: str) -> None:
    """Write the referenced original image with the uploaded mask's alpha; bad references write nothing."""
    original_ref = json.loads(post.get("original_ref"))
    filename, output_dir = sim.folders.annotated(original_ref["filename"])
    if not filename or filename[0] == "/" or ".." in filename:
        return
    base = output_dir if output_dir is not None else sim.folders.directory_by_type(original_ref.get("type", "output"))
    if base is None:
        return
    directory = str(base)
    if original_ref.get("subfolder", "") != "":
        candidate = os.path.join(directory, original_ref["subfolder"])
        if os.path.commonpath((os.path.abspath(candidate), directory)) != directory:
            return
        directory = candidate
    source = os.path.join(directory, filename)
    if not os.path.isfile(source):
        return
    with Image.open(source) as original:
        metadata = PngInfo()
        for key, value in getattr(original, "text", {}).items():
            metadata.add_text(key, value)
        rgba = original.convert("RGBA")
        rgba.putalpha(Image.open(image.file).convert("RGBA").getchannel("A"))
        rgba.save(filepath, compress_level=4, pnginfo=metadata)


def _rendered(img: Image.Image, image_format: str, **save_args: Any) -> bytes:
    buffer = BytesIO()
    img.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def _view_variant(
    file: str, filename: str, query: Any, *, safe_headers: bool = False, fetch_dest: str = ""
) -> web.StreamResponse:
    disposition = {"Content-Disposition": f'filename="{filename}"'}
    if "preview" in query:
        with Image.open(file) as img:
            parts = query["preview"].split(";")
            image_format = parts[0]
            if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                image_format = "webp"
            quality = int(parts[-1]) if parts[-1].isdigit() else 90
            source: Image.Image = img
            if image_format == "jpeg" or query.get("channel", "") == "rgb":
                source = img.convert("RGB")
            body = _rendered(source, image_format, quality=quality)
        return web.Response(body=body, content_type=f"image/{image_format}", headers=disposition)
    channel = query.get("channel", "rgba")
    if channel == "rgb":
        with Image.open(file) as img:
            rgb = Image.merge("RGB", img.split()[:3]) if img.mode == "RGBA" else img.convert("RGB")
            return web.Response(body=_rendered(rgb, "PNG"), content_type="image/png", headers=disposition)
    if channel == "a":
        with Image.open(file) as img:
            alpha = img.split()[3] if img.mode == "RGBA" else Image.new("L", img.size, 255)
            holder = Image.new("RGBA", img.size)
            holder.putalpha(alpha)
            return web.Response(body=_rendered(holder, "PNG"), content_type="image/png", headers=disposition)
    content_type = _guess_content_type(filename)
    if safe_headers:
        return web.FileResponse(file, headers=_safe_raw_headers(filename, content_type, fetch_dest))
    if content_type in _FORCED_DOWNLOAD:
        content_type = "application/octet-stream"
    return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})


def _can_run_script(content_type: str) -> bool:
    base = content_type.split(";")[0].strip().lower()
    return (
        base in _FORCED_DOWNLOAD
        or base in ("application/javascript", "image/svg+xml")
        or base.endswith(("+xml", "/xml"))
    )


def _safe_raw_headers(filename: str, content_type: str, fetch_dest: str) -> dict[str, str]:
    """ComfyUI >= ~0.28: a raw file that could run script in a browser is an attachment (an SVG stays inline only
    when the browser fetches it as an image); every raw file says nosniff."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    headers = {"X-Content-Type-Options": "nosniff"}
    inline_svg = content_type.startswith("image/svg+xml") and fetch_dest == "image"
    if _can_run_script(content_type) and not inline_svg:
        headers.update({
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{quoted}"',
            "Vary": "Sec-Fetch-Dest",
            "Cache-Control": "no-store",
        })  # fmt: skip
    else:
        headers.update({"Content-Type": content_type, "Content-Disposition": f'filename="{quoted}"'})
        if content_type.startswith("image/svg+xml"):
            headers["Vary"] = "Sec-Fetch-Dest"
    return headers


# ComfyUI registers these types at start-up (server.py); kept local here instead of changing the process-wide table.
_REGISTERED_TYPES = {".js": "application/javascript; charset=utf-8", ".webp": "image/webp"}


def _guess_content_type(filename: str) -> str:
    registered = _REGISTERED_TYPES.get(os.path.splitext(filename)[1].lower())
    return registered or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _view(sim: Simulator, query: Any, fetch_dest: str = "") -> web.StreamResponse:
    if "filename" not in query:
        return web.Response(status=404)
    filename, output_dir = sim.folders.annotated(query["filename"])
    if not filename or filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    base = output_dir if output_dir is not None else sim.folders.directory_by_type(query.get("type", "output"))
    if base is None:
        return web.Response(status=400)
    directory = str(base)
    if "subfolder" in query:
        candidate = os.path.join(directory, query["subfolder"])
        if os.path.commonpath((os.path.abspath(candidate), directory)) != directory:
            return web.Response(status=403)
        directory = candidate
    filename = os.path.basename(filename)
    file = os.path.join(directory, filename)
    if not os.path.isfile(file):
        return web.Response(status=404)
    return _view_variant(
        file, filename, query, safe_headers=sim.config.profile.safe_view_headers, fetch_dest=fetch_dest
    )


def _safetensors_metadata(path: str) -> Any:
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            return None
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER_BYTES:
            return None
        header = json.loads(handle.read(length))
    return header.get("__metadata__") if isinstance(header, dict) else None


def add_routes(routes: web.RouteTableDef, sim: Simulator) -> None:
    @routes.post("/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        return _image_upload(sim, await request.post())

    @routes.post("/upload/mask")
    async def upload_mask(request: web.Request) -> web.Response:
        post = await request.post()
        return _image_upload(sim, post, lambda image, form, path: _apply_mask(sim, image, form, path))

    @routes.get("/view")
    async def view(request: web.Request) -> web.StreamResponse:
        return _view(sim, request.rel_url.query, request.headers.get("Sec-Fetch-Dest", "").lower())

    @routes.get("/view_metadata/{folder_name}")
    async def view_metadata(request: web.Request) -> web.Response:
        filename = request.rel_url.query.get("filename")
        if filename is None or not filename.endswith(".safetensors"):
            return web.Response(status=404)
        path = sim.folders.model_path(request.match_info["folder_name"], filename)
        if path is None:
            return web.Response(status=404)
        metadata = _safetensors_metadata(str(path))
        if metadata is None:
            return web.Response(status=404)
        return web.json_response(metadata)
