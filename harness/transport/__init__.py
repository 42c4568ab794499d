"""Transports: how the host reaches a target. One protocol, several implementations."""

from harness.transport.base import AgentProcess, Transport, TransportError

__all__ = ["AgentProcess", "Transport", "TransportError"]
