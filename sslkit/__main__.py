"""``python -m sslkit`` (what torchrun launches)."""

from sslkit.cli import main

main()
