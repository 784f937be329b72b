"""Prefect flows that sequence the platform's work, and the `vjepa` command line.

Flows import `tasks` and `serving`; nothing below imports flows.
"""
