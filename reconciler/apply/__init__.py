"""Apply: a plan's batches through the federation API, recorded step by step in the store."""
