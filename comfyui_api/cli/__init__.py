"""The `comfyui-api` command (argparse). Server side: `serve` (the default), `worker`, `runpod`, `simulator`
(`cli/server.py`). Client side, talking to a running server: `run`, `jobs` (`cli/jobs.py`); `workflow convert|inputs`
(`cli/workflow.py`); `completion` prints a shell's completion script. `--help` (also on each command) lists what it
takes, `--version` prints the version, and an unknown argument exits 2 (never a silently started server). The
server's modules are imported only by the server commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from comfyui_api.settings import VARIABLES
from comfyui_api.version import package_version


def _environment_help() -> str:
    width = max(len(name) for name, _, _ in VARIABLES)
    lines = ["configuration (environment variables, read once at start; a bad value exits 2 naming it):"]
    for name, default, meaning in VARIABLES:
        shown = f" [default: {default}]" if default else ""
        lines.append(f"  {name.ljust(width)}  {meaning}{shown}")
    return "\n".join(lines)


def _server_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_parser = commands.add_parser(
        "serve",
        help="run the HTTP server (and ComfyUI, or the simulator when none is configured)",
        description="Run the HTTP server; launches ComfyUI (or attaches to COMFYUI_URL).",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker_parser = commands.add_parser(
        "worker",
        help="take tasks from RabbitMQ only (AMQP_URL or AMQP_HOST required); HTTP answers just /health and /ready",
        description="Run the AMQP consumer without the HTTP job API; /health and /ready stay up for probes.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for listening in (serve_parser, worker_parser):
        listening.add_argument("--host", help="address to listen on (overrides HOST)")
        listening.add_argument("--port", type=int, help="port to listen on (overrides PORT)")
    commands.add_parser(
        "runpod",
        help="run as a RunPod serverless worker (the runpod SDK's flags pass through: --test_input, --rp_serve_api)",
        add_help=False,
    )
    commands.add_parser(
        "completion",
        help='print a shell completion script: eval "$(comfyui-api completion bash)" (also zsh, fish)',
        description="Print the script that makes your shell complete comfyui-api's commands and flags. bash: add "
        '`eval "$(comfyui-api completion bash)"` to ~/.bashrc; zsh: the same with zsh, to ~/.zshrc; fish: '
        "`comfyui-api completion fish | source`.",
    ).add_argument("shell", choices=("bash", "zsh", "fish"))
    commands.add_parser(
        "simulator",
        help="run the bundled ComfyUI simulator (ComfyUI's flags, plus --comfyui-version and --step-seconds)",
        add_help=False,
    )


def build_parser() -> argparse.ArgumentParser:
    from comfyui_api.cli.jobs import add_client_commands
    from comfyui_api.cli.workflow import add_workflow_commands

    parser = argparse.ArgumentParser(
        prog="comfyui-api",
        description="Run any ComfyUI workflow over HTTP. Without a command, `serve`.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"comfyui-api {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _server_commands(commands)
    add_client_commands(commands)
    add_workflow_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (see `completion`): answer and exit
        import argcomplete

        argcomplete.autocomplete(build_parser())
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "simulator":  # every later argument is the simulator's own (ComfyUI's flags)
        from comfyui_api.cli.server import run_simulator

        return run_simulator(args[1:])
    if args and args[0] == "runpod":  # every later argument is the runpod SDK's own
        from comfyui_api.cli.server import run_runpod_worker

        return run_runpod_worker(args[1:])
    if not args or (args[0] not in ("serve", "-h", "--help", "--version") and args[0].startswith("-")):
        args.insert(0, "serve")  # compat: `comfyui-api` alone serves, as before subcommands
    options = build_parser().parse_args(args)  # an unknown command or flag exits 2 with a usage line
    if options.command in ("run", "jobs"):
        from comfyui_api.cli.jobs import run_client_command

        return run_client_command(options)
    if options.command == "completion":
        import argcomplete

        sys.stdout.write(argcomplete.shellcode(["comfyui-api"], shell=options.shell))
        return 0
    if options.command == "workflow":
        from comfyui_api.cli.workflow import run_workflow_command

        return run_workflow_command(options)
    from comfyui_api.cli.server import serve_command

    environ = dict(os.environ)
    if options.host is not None:
        environ["HOST"] = options.host
    if options.port is not None:
        environ["PORT"] = str(options.port)
    return serve_command(environ, worker=options.command == "worker")
