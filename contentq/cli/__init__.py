"""The Typer CLI: thin commands over the core, rendered with rich."""
