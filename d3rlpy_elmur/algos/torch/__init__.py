"""The torch side of the algorithms (d3rlpy's impl layer)."""
