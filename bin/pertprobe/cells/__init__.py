"""The cell-embedding benchmark: baseline embedders, alignment and the five tasks."""
