"""Helpers shared by the test suites (a live sandbox, ...)."""
