"""Command-line interface: `pcc.cli.main` dispatches to one module per subcommand."""
