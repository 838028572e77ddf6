"""The base of svcpulse's import graph: validated settings (settings.py) shared by every command.

Nothing here imports the other svcpulse packages, so a collector node, a loader, the API and the
balancer syncs all read their configuration the same way without pulling in each other's dependencies.
"""
