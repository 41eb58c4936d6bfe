"""Ray Tune schedulers of efficient-search, installed as ``efficient_search.schedulers``."""
