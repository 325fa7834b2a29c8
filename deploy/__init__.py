"""Deploying Corridor: the release script (``python -m deploy.release``) and its files."""
