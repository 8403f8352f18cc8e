"""The options several commands share, as a Markdown table generated from the commands.

One vocabulary: an option name means one kind of value in every command that has it
(``--data`` is always a data spec, ``--train-features`` always an HDF5 feature file,
``--data-root`` always a folder holding datasets, ...). :data:`MEANINGS` says what each
shared option means; the tests check that every shared option has one kind of value and a
meaning here, and that the table in the documentation (``docs/commands/index.md``) is
:func:`shared_options_table`. Regenerate it with ``python -m sslkit.commands.reference``.
"""

from __future__ import annotations

import click

from sslkit.cli import SUBCOMMANDS, cli

#: What every option that several commands take means (the same in each of them).
MEANINGS: dict[str, str] = {
    "--encoder": "which backbone embeds the images: online (default) or the momentum encoder",
    "--recompute-bn": "recompute BatchNorm statistics on N clean training images before "
                      "embedding (0: keep the checkpoint's)",
    "--baselines": "also run the same protocol on the raw pixels and on the architecture at "
                   "its random initialisation",
    "--arch": "backbone architecture (pretrain: the one trained; others: when the checkpoint "
              "does not say)",
    "--batch-size": "images per batch (the total over all processes)",
    "--cache-dir": "feature cache folder (default `$SSLKIT_CACHE` or `~/.cache/sslkit`)",
    "--checkpoint": "an encoder: sslkit checkpoint, torchvision state dict or MoCo/PCL/HCSC "
                    "release",
    "--config": "a YAML config file or a shipped config's name",
    "--costs": "inverse L2 strengths the L-BFGS probe tries",
    "--data": "a data spec (`digits`, `fashion-mnist`, `imagefolder:PATH`, ...)",
    "--data-root": "a folder holding datasets in their released layout",
    "--debug": "full tracebacks on errors",
    "--device": "`auto` (CUDA when present), `cpu` or `cuda`",
    "--download": "allow downloading Fashion-MNIST when it is missing",
    "--epochs": "epochs to train (of the run, or of the recipe)",
    "--force": "replace existing outputs",
    "--json": "also write the results as JSON to PATH (`-` for stdout)",
    "--k": "numbers of nearest neighbours",
    "--layer": "`backbone` (pooled backbone feature) or `head` (the method's embedding)",
    "--lr": "learning rate (of the run, or of the recipe)",
    "--milestones": "epochs where a step schedule multiplies the lr",
    "--no-cache": "always re-extract features",
    "--no-progress": "no progress bar or progress log lines on stderr",
    "--num-workers": "image-decoding worker processes",
    "--out": "the output file",
    "--recipe": "a named evaluation schedule of the papers",
    "--resume": "continue the run in `--workdir`",
    "--runs": "repetitions of the protocol (mean and std reported)",
    "--seed": "random seed",
    "--set": "a config value, `SECTION.KEY=VALUE` (repeatable)",
    "--skip-bad-images": "leave out image files that do not decode, and count them",
    "--task": "which protocol of the command",
    "--temperature": "a softmax temperature",
    "--test-features": "features of the test split: an sslkit feature file, another tool's "
                       "HDF5 file (`features`, `labels`) or a `.npy` array",
    "--test-labels": "labels (a `.npy` array of N integers) of `--test-features` that carry "
                     "none",
    "--train-features": "features of the training split: an sslkit feature file, another "
                        "tool's HDF5 file (`features`, `labels`) or a `.npy` array",
    "--train-labels": "labels (a `.npy` array of N integers) of `--train-features` that carry "
                      "none",
    "--weight-decay": "weight decay of the recipe's optimiser",
    "--workdir": "the run's folder: checkpoints, metrics and results",
}


def kind(param: click.Parameter) -> str:
    """The kind of value an option takes, as the table shows it."""
    if getattr(param, "is_flag", False):
        return "flag"
    if param.metavar:
        return param.metavar
    kinds = param.type
    if isinstance(kinds, click.Choice):
        return "|".join(kinds.choices)
    if isinstance(kinds, click.Path):
        return "FILE" if not kinds.dir_okay else "DIR" if not kinds.file_okay else "PATH"
    if isinstance(kinds, click.types.IntParamType):
        return "N"
    if isinstance(kinds, click.types.FloatParamType):
        return "X"
    if kinds.name == "list":
        return "N,N,..." if getattr(kinds, "kind", float) is int else "X,X,..."
    return "TEXT"


def shared_options() -> dict[str, dict[str, str]]:
    """``{flag: {command: kind}}`` of every visible option at least two commands take."""
    found: dict[str, dict[str, str]] = {}
    for name in SUBCOMMANDS:
        command = cli.get_command(click.Context(cli), name)
        for param in command.params:
            flags = [flag for flag in param.opts if flag.startswith("--")]
            if flags and not getattr(param, "hidden", False):
                found.setdefault(flags[0], {})[name] = kind(param)
    return {flag: uses for flag, uses in sorted(found.items()) if len(uses) > 1}


def shared_options_table() -> str:
    """The Markdown table of :func:`shared_options`, with :data:`MEANINGS`."""
    lines = ["| option | value | meaning | commands |", "|---|---|---|---|"]
    for flag, uses in shared_options().items():
        value = " / ".join(sorted(set(uses.values()))).replace("|", "\\|")  # a table cell
        commands = ", ".join(uses) if len(uses) < len(SUBCOMMANDS) else "all"
        lines.append(f"| `{flag}` | `{value}` | {MEANINGS.get(flag, '?')} | {commands} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(shared_options_table(), end="")
