"""Training machinery: strategy factory, model factory, custom loop, checkpoints, summaries."""
