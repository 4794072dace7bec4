"""Command-line interface: `pcc.cli.main` dispatches to one module per subcommand (`check`,
`train`, ...); `options` holds the argument types all of them share, `common` and
`query_common` what several share, `train_log` the per-epoch metrics of `pcc train`."""
