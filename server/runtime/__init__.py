"""Running tokenwire: config, the one composition root, lifecycle, CLI and worker processes."""
