"""Session replay: agent runs recorded step by step, read back, and re-run."""
