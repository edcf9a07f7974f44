"""The console's browser tier (a package so that its platforms are package-scoped: they stop when the
last test here ends, not at the end of the whole session)."""
