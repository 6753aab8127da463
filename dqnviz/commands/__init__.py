"""One module per ``dqnviz`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""
