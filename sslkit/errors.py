"""The one exception type that means "the user's input is wrong" (exit code 2)."""

from __future__ import annotations


class BadInput(Exception):
    """Bad input or usage: the message says what is wrong and how to fix it.

    The CLI prints it as a single line and exits with code 2. Library code raises it
    for anything the user can fix (missing files, unknown names, wrong shapes). Line
    breaks in the message (a user's value quoted in it may hold some) are written as
    ``\\n``, so the message stays one line.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        for raw, escaped in (("\r", "\\r"), ("\n", "\\n"), ("\x0b", "\\v"),
                             ("\x0c", "\\f"), ("\x1c", "\\x1c"), ("\x1d", "\\x1d"),
                             ("\x1e", "\\x1e"), ("\x85", "\\x85"), ("\u2028", "\\u2028"),
                             ("\u2029", "\\u2029")):  # what str.splitlines splits on
            text = text.replace(raw, escaped)
        super().__init__(text, *args)


#: Exit code of a run that a signal stopped after writing its checkpoint (``--resume``
#: continues it). 0 success, 1 internal error, 2 bad input, 130 stopped at once (Ctrl-C).
EXIT_STOPPED = 3
#: Exit code of a command interrupted at once (a Ctrl-C outside training, or a second one).
EXIT_INTERRUPTED = 130


class TrainingStopped(Exception):  # noqa: N818 - a stop, not an error
    """A signal stopped training after the checkpoint named here was written.

    ``step`` is the last step done and ``epoch`` (1-based) the epoch it belongs to.
    The CLI prints one line (what was saved, how to resume) and exits with
    :data:`EXIT_STOPPED`; ``main`` is False on the processes that do not speak (rank > 0).
    """

    def __init__(self, signal_name: str, epoch: int, step: int, checkpoint: str,
                 main: bool = True) -> None:  # fmt: skip
        super().__init__(f"stopped by {signal_name} after step {step} (epoch {epoch}); "
                         f"checkpoint {checkpoint} written")  # fmt: skip
        self.signal_name = signal_name
        self.epoch = epoch
        self.step = step
        self.checkpoint = checkpoint
        self.main = main
