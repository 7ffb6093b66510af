"""Datasets: validation, preprocessing, DE, pseudobulk, splits, the simulator, samplesheets."""
