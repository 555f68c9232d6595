"""Synthetic multi-camera driving world: town, agents, expert, renderer and bag recorder."""
