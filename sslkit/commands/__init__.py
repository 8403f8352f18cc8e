"""One thin module per subcommand: options -> library call -> table / JSON."""
