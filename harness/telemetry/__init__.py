"""Telemetry: parsers for device tools (shipped to devices with the agent; stdlib only) and the
``python -m harness.telemetry`` CLI."""
