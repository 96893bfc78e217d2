"""Source adapters: one module per corpus layout (see ``pipelines.sources.registry``)."""
