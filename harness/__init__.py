"""edge-harness: hardware-in-the-loop profiling of compressed TFLite models on edge devices."""

__version__ = "0.1.0"
