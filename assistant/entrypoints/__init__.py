"""Entry points: the CLI, the web app, the runner and the demo."""
