"""Where results live: a local path or a URI (s3://, gs://, ...), read and written through one
pyarrow filesystem code path, the one Ray Tune itself uses for `storage_path`.

Every command that reads or writes an experiment goes through these few functions, so a bucket
behaves like a folder. A location is what a user types: a path (made absolute) or a URI, which is
kept as given (its scheme and any query, e.g. `?endpoint_override=`), never turned back from a
filesystem path: Ray Tune reports a trial's path without its scheme ("bucket/exp/trial"), and a
folder named "s3:" is what rebuilding a URI from such a path makes.

The endpoint and credentials come from the standard AWS (or Google) environment variables,
which pyarrow reads: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; for gs://
GOOGLE_APPLICATION_CREDENTIALS (and CLOUD_STORAGE_EMULATOR_ENDPOINT for an emulator). None of
them is ever written with the results; a URI that carries a secret is refused (`credential_problem`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

# The schemes pyarrow's FileSystem.from_uri opens (with the optional packages of each).
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az", "file")


def scheme(location: str) -> str | None:
    """The URI scheme of ``location`` in lower case ("s3"), or None for a local path."""
    head, sep, _ = location.partition("://")
    return head.lower() if sep else None


def is_uri(location: str | os.PathLike) -> bool:
    return scheme(str(location)) is not None


def norm(location: str | os.PathLike) -> str:
    """A local path made absolute (Ray workers run in their trial directories), or the URI itself."""
    location = str(location)
    if is_uri(location):
        return location.rstrip("/")
    return str(Path(location).expanduser().resolve())


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a location."""
    return pafs.FileSystem.from_uri(norm(location))


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location``/part/...: the same on a path and a URI (a URI's query stays at its end)."""
    location = norm(location)
    if not is_uri(location):
        return str(Path(location, *parts))
    head, q, query = location.partition("?")
    return head.rstrip("/") + "".join(f"/{p.strip('/')}" for p in parts) + q + query


def name(location: str | os.PathLike) -> str:
    """The last component: a trial directory's or a file's name."""
    return norm(location).partition("?")[0].rstrip("/").rsplit("/", 1)[-1]


def sibling(location: str | os.PathLike, new_name: str) -> str:
    """A file beside ``location`` (the same folder), named ``new_name``."""
    location = norm(location)
    if not is_uri(location):
        return str(Path(location).with_name(new_name))
    head, q, query = location.partition("?")
    return head.rstrip("/").rsplit("/", 1)[0] + f"/{new_name}" + q + query


def kind(location: str | os.PathLike) -> pafs.FileType:
    """NotFound, File or Directory. On object storage a "directory" is a prefix with objects."""
    fs, path = resolve(location)
    return fs.get_file_info(path).type


def is_dir(location: str | os.PathLike) -> bool:
    return kind(location) == pafs.FileType.Directory


def exists(location: str | os.PathLike) -> bool:
    return kind(location) != pafs.FileType.NotFound


def children(location: str | os.PathLike) -> list[str]:
    """The names directly under a directory (none when it does not exist), sorted."""
    fs, path = resolve(location)
    return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))


def read_bytes(location: str | os.PathLike) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write whole or not at all: locally a temporary file renamed into place; on object storage
    one PUT, which the store makes visible whole."""
    fs, path = resolve(location)
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_json(location: str | os.PathLike) -> Any:
    return json.loads(read_bytes(location).decode())


def read_optional_json(location: str | os.PathLike) -> Any:
    """The JSON at ``location``, or None where it is missing or unreadable."""
    try:
        return read_json(location)
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return None


def write_json(location: str | os.PathLike, obj: Any) -> None:
    write_bytes(location, json.dumps(obj, indent=2).encode())


def delete_dir(location: str | os.PathLike) -> None:
    fs, path = resolve(location)
    fs.delete_dir(path)


def credential_problem(location: str) -> str | None:
    """Why ``location`` may not be stored as given: a secret in the URI (user:secret@ or a
    secret_key/session_token query) would be written into sweep-spec.json and Tune's state."""
    if not is_uri(location):
        return None
    parts = urlsplit(location)
    secret = parts.password is not None or any(
        k.lower() in ("secret_key", "session_token", "access_key") for k, _, _ in
        (q.partition("=") for q in parts.query.split("&") if q)
    )
    if not secret:
        return None
    where = ("GOOGLE_APPLICATION_CREDENTIALS (a key file)" if scheme(location) in ("gs", "gcs")
             else "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return (f"carries credentials; give them through {where} (or the cloud's own login), never in "
            "the URI: it is saved with the results")


# How long a gs:// probe retries. Google's client retries for 15 minutes by default, and where a machine
# has no Google credentials it spends them asking for a token: a run would wait that long to be refused.
GCS_PROBE_RETRY_S = 10


def write_problem(location: str) -> str | None:
    """Why nothing can be written at a URI (no bucket, no permission, no server, no credentials),
    found by writing and at once deleting a small object; None when the write went through."""
    probe = join(location, f".write-probe-{os.getpid()}")
    if scheme(probe) in ("gs", "gcs") and "retry_limit_seconds=" not in probe:  # the probe's URI only
        probe += ("&" if "?" in probe else "?") + f"retry_limit_seconds={GCS_PROBE_RETRY_S}"
    try:
        fs, path = resolve(probe)
        with fs.open_output_stream(path) as f:
            f.write(b"probe")
        fs.delete_file(path)
    except (OSError, ValueError) as e:  # pyarrow's messages name the bucket and the cause
        return f"cannot write there: {' '.join(str(e).split())}"
    return None
