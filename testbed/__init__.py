"""Real servers and clusters on one machine, for the tests, demos and benchmarks (never imported by
the product packages `trainables`, `sweep` and `analysis`): `s3` (a SeaweedFS S3 server), `gcs` (a
fake-gcs-server GCS server), `cluster` (`ray start` nodes, the fake autoscaler), `slurm` (munged,
slurmctld and `slurmd -N` nodes), `procs` (free ports, installed commands)."""
