"""Analysis of sweep results: paper-style figures, the gap table, the published reference."""
