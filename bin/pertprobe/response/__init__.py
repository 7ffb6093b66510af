"""The response benchmark: training data, predictors, gene embeddings, metrics, bounds, statistics."""
