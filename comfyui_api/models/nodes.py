"""Custom node installation into `<COMFY_HOME>/custom_nodes/<name>`: git clones checked out at a ref, with their
requirements.txt installed, and registry nodes through comfy-cli.

A fresh clone is prepared under a hidden temp name and renamed into place only once its requirements are
installed, so a half-installed node is never left where ComfyUI would load it. Never touches models or apt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from comfyui_api.models.commands import (
    CommandFailed,
    comfy_node_install_command,
    git_checkout_command,
    git_clone_command,
    git_env,
    git_fetch_command,
    git_rev_parse_command,
    git_submodules_command,
    pip_install_command,
    run_command,
)
from comfyui_api.models.manifest import CustomNode, GitNode, RegistryNode

log = logging.getLogger(__name__)


class NodeInstaller:
    def __init__(
        self,
        *,
        comfy_home: Path,
        pip_cmd: Sequence[str],
        pip_extra_args: Sequence[str] = (),
        comfy_cli: str | None,
        git_timeout_s: float,
        pip_timeout_s: float,
        comfy_cli_timeout_s: float,
    ):
        self.nodes_dir = comfy_home / "custom_nodes"
        self._comfy_home = comfy_home
        self._pip_cmd = tuple(pip_cmd)
        self._pip_extra_args = tuple(pip_extra_args)
        self._comfy_cli = comfy_cli
        self._git_timeout_s = git_timeout_s
        self._pip_timeout_s = pip_timeout_s
        self._comfy_cli_timeout_s = comfy_cli_timeout_s

    async def install(self, node: CustomNode) -> tuple[str, str]:
        """Returns (action, detail): ("skipped", ...) when nothing had to change."""
        if isinstance(node, RegistryNode):
            return await self._install_registry(node)
        return await self._install_git(node)

    async def _install_registry(self, node: RegistryNode) -> tuple[str, str]:
        dest = self.nodes_dir / node.name
        if await asyncio.to_thread(dest.is_dir):
            return "skipped", f"{node.name} is present in {self.nodes_dir}"
        if self._comfy_cli is None:
            raise CommandFailed(
                f"{node.spec!r} is a registry node name; installing it needs comfy-cli on PATH "
                "(pip install comfy-cli), or give the node's git URL instead",
                argv=("comfy",),
                returncode=None,
            )
        argv = comfy_node_install_command(self._comfy_cli, self._comfy_home, node.spec)
        await run_command(argv, timeout_s=self._comfy_cli_timeout_s, env=git_env())
        return "installed", f"{node.spec} with comfy-cli"

    async def _install_git(self, node: GitNode) -> tuple[str, str]:
        dest = self.nodes_dir / node.name
        if await asyncio.to_thread((dest / ".git").exists):
            return await self._update_git(node, dest)
        if await asyncio.to_thread(dest.exists):
            log.warning("custom node folder %s exists but is not a git checkout; leaving it as it is", dest)
            return "skipped", f"{dest} exists (not a git checkout)"
        await asyncio.to_thread(self.nodes_dir.mkdir, parents=True, exist_ok=True)
        staging = self.nodes_dir / f".{node.name}.{secrets.token_hex(4)}.partial"
        try:
            await self._git(git_clone_command(node.url, staging))
            commit = await self._checkout(staging, node.ref, fetched=True)
            await self._finish_checkout(staging)
            await asyncio.to_thread(staging.rename, dest)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return "installed", f"{node.url} at {commit[:12]} into {dest}"

    async def _update_git(self, node: GitNode, dest: Path) -> tuple[str, str]:
        head = await self._rev_parse(dest, "HEAD")
        if node.ref is None:
            return "skipped", f"{node.name} is present at {(head or '?')[:12]}"
        wanted = await self._resolve(dest, node.ref)
        if wanted is not None and wanted == head:
            return "skipped", f"{node.name} is at {node.ref} ({head[:12]})"
        await self._git(git_fetch_command(dest))
        commit = await self._checkout(dest, node.ref, fetched=True)
        try:
            await self._finish_checkout(dest)
        except CommandFailed:
            if head is not None:  # put the old, working checkout back before failing
                with contextlib.suppress(CommandFailed):
                    await self._git(git_checkout_command(dest, head))
            raise
        return "installed", f"{node.name} moved from {(head or '?')[:12]} to {commit[:12]}"

    async def _checkout(self, repo: Path, ref: str | None, *, fetched: bool) -> str:
        if ref is not None:
            commit = await self._resolve(repo, ref, prefer_remote=fetched)
            if commit is None:
                raise CommandFailed(f"ref {ref!r} was not found in {repo.name}", argv=("git",), returncode=None)
            await self._git(git_checkout_command(repo, commit))
        return await self._rev_parse(repo, "HEAD") or "unknown"

    async def _finish_checkout(self, repo: Path) -> None:
        if await asyncio.to_thread((repo / ".gitmodules").is_file):
            await self._git(git_submodules_command(repo))
        requirements = repo / "requirements.txt"
        if await asyncio.to_thread(requirements.is_file):
            argv = pip_install_command(self._pip_cmd, requirements_file=requirements, extra_args=self._pip_extra_args)
            await run_command(argv, timeout_s=self._pip_timeout_s, cwd=repo)

    async def _resolve(self, repo: Path, ref: str, *, prefer_remote: bool = False) -> str | None:
        """A branch name means the remote's branch (after a fetch); tags and commits resolve as they are."""
        candidates = [f"origin/{ref}", ref] if prefer_remote else [ref, f"origin/{ref}"]
        for candidate in candidates:
            commit = await self._rev_parse(repo, candidate)
            if commit is not None:
                return commit
        return None

    async def _rev_parse(self, repo: Path, ref: str) -> str | None:
        result = await run_command(
            git_rev_parse_command(repo, ref), timeout_s=self._git_timeout_s, env=git_env(), check=False
        )
        sha = result.stdout.strip()
        return sha if result.returncode == 0 and sha else None

    async def _git(self, argv: list[str]) -> None:
        await run_command(argv, timeout_s=self._git_timeout_s, env=git_env())
