"""Real servers and clusters on one machine, for the tests, demos and benchmarks; never imported by
the product packages `trainables`, `sweep` and `analysis`."""
