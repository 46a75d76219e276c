"""The admin panel and JSON API (`contentq web`): pages and endpoints over the same cores as the CLI."""
