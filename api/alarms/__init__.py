"""Alarms: rules on any RPC series (rules.py, pure), evaluated every minute (service.py), notified by webhook."""
