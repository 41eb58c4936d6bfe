"""Shared contract suites, shipped with the package so that every new scheduler inherits them."""
