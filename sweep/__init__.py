"""The sweep on Ray Tune: spec, fan-out, trainable, resume, status, export, evaluate."""
