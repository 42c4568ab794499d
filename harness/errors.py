"""Errors that the CLIs turn into one line on stderr and exit status 2."""


class HarnessError(Exception):
    """A user-facing error: its message is one line naming where and what was expected."""


class BadInput(HarnessError):
    """A file the user gave us is malformed (YAML, .tflite, manifest, trace)."""
