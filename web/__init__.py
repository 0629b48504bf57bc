"""The web app (`reasongen serve`): review desk, monitoring pages, JSON API and metrics over the CLI's services."""
