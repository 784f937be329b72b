"""Video curation: probe -> filter -> decode -> cut -> quality -> shards, as Ray Data stages.

See `tasks.curation.pipeline` for the wiring and docs/data-contracts.md for the output.
"""
