"""Process entry points: the WSGI app, the RQ tasks and workers, the sweeper and the CLI."""
