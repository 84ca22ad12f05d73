"""Test doubles and fault injection for the project's own tests and for users' plugin tests."""
