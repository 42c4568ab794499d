"""Candidate model zoo: manifests, graph reading, builders (TensorFlow only in builders)."""
