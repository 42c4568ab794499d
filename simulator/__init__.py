"""Trace replay of runtime adaptation policies: traces -> world + belief -> replay -> metrics."""
