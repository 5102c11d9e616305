"""`cgraph`, the command line: the one place that wires loaders/, graph/, analysis/ and api/."""
