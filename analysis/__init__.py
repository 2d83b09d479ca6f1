"""Analysis of sweep results: paper-style figures and the gap table (issue 4)."""
