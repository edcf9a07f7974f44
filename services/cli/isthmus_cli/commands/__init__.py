"""One module per command (or command group); ``isthmus_cli.main`` registers them on the app."""
