"""What every room shares and that talks to nothing: the named errors, the graph model (names,
release-scoped properties, count keys), time budgets."""
