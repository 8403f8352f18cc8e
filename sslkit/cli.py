"""The ``sslkit`` command group. Subcommands are imported lazily so ``--help`` is instant."""

from __future__ import annotations

import importlib
import shlex
import sys
import traceback

import click

SUBCOMMANDS = {
    "methods": "sslkit.commands.methods:methods",
    "pretrain": "sslkit.commands.pretrain:pretrain",
    "extract": "sslkit.commands.extract:extract",
    "knn": "sslkit.commands.knn:knn",
    "cluster": "sslkit.commands.cluster:cluster",
    "linear": "sslkit.commands.linear:linear",
    "semisup": "sslkit.commands.semisup:semisup",
    "transfer": "sslkit.commands.transfer:transfer",
    "detect": "sslkit.commands.detect:detect",
}
DEBUG_KEY = "sslkit.debug"
ARGV_KEY = "sslkit.argv"


class BadInputError(click.ClickException):
    """Bad input: one line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"error: {self.message}", err=True)


class InternalError(click.ClickException):
    """An unexpected failure: one line (traceback with --debug), exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"internal error: {self.message} (run with --debug for the traceback)",
                   err=True)  # fmt: skip


def set_debug(ctx: click.Context, _param, value: bool) -> None:
    """Callback of every ``--debug`` flag: remember it for the error handler."""
    if value:
        ctx.meta[DEBUG_KEY] = True


debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=set_debug,
    help="Show full tracebacks on errors.",
)  # fmt: skip


class StoppedExit(click.ClickException):
    """A run stopped by a signal after its checkpoint: one line, exit code 3."""

    def __init__(self, message: str, exit_code: int, speak: bool = True) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.speak = speak

    def show(self, file=None) -> None:  # noqa: D102 - click API
        if self.speak:
            click.echo(self.message, err=True)


def resume_command(argv: list[str]) -> str:
    """The command line that continues a stopped run: the same, with ``--resume`` and
    without ``--force`` (quoted for a POSIX shell)."""
    args = [arg for arg in argv if arg != "--force"]
    if "--resume" not in args:
        args.append("--resume")
    return "sslkit " + shlex.join(args)


class SslkitGroup(click.Group):
    """A click group with lazily imported subcommands and sslkit's error contract."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)  # for the resume hint of a stopped run
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module_name, attribute = SUBCOMMANDS[name].split(":")
        from sslkit.commands.common import guard_outputs

        return guard_outputs(getattr(importlib.import_module(module_name), attribute))

    def invoke(self, ctx: click.Context):
        from sslkit.errors import EXIT_INTERRUPTED, EXIT_STOPPED, BadInput, TrainingStopped

        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option value or a typo: one line, exit 2
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise BadInputError(f"{exc.format_message()} (see '{where} --help')") from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BadInput as exc:
            if ctx.meta.get(DEBUG_KEY):
                traceback.print_exc()
            raise BadInputError(str(exc).splitlines()[0] if str(exc) else "bad input") from exc
        except TrainingStopped as exc:
            if ctx.meta.get(DEBUG_KEY):
                traceback.print_exc()
            hint = resume_command(ctx.meta.get(ARGV_KEY, []))
            raise StoppedExit(f"stopped by {exc.signal_name} after step {exc.step} (epoch "
                              f"{exc.epoch}): every step is in {exc.checkpoint}; continue "
                              f"with: {hint}", EXIT_STOPPED, speak=exc.main) from exc
        except KeyboardInterrupt as exc:
            if ctx.meta.get(DEBUG_KEY):
                traceback.print_exc()
            raise StoppedExit("interrupted (Ctrl-C): stopped at once; files are written whole "
                              "or not at all, and a pretrain run keeps its last checkpoint "
                              "(continue it with --resume)", EXIT_INTERRUPTED) from exc
        except Exception as exc:
            if ctx.meta.get(DEBUG_KEY):
                traceback.print_exc()
            text = str(exc).strip()
            message = f"{exc.__class__.__name__}: {text.splitlines()[0] if text else ''}"
            raise InternalError(message) from exc


@click.group(cls=SslkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sslkit")
@debug_option
def cli() -> None:
    """Self-supervised visual representation learning: pre-train, extract, evaluate.

    \b
    Example (trains on the bundled digits, no download):
      sslkit pretrain --method moco --epochs 5 --workdir runs/moco
      sslkit knn --checkpoint runs/moco/checkpoint.pt --data digits
    """


def main() -> None:
    """Console-script entry point."""
    cli.main(args=sys.argv[1:], prog_name="sslkit")


if __name__ == "__main__":
    main()
