"""Workflows: the firm's durable journey."""
