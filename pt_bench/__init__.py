"""Metrics with a fixed protocol, leaderboards and report figures; issue #7. Imports pt_data, never pt_model."""
