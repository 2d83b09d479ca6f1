"""cluster/kubernetes/rayjob.yaml checked on paper: no Kubernetes runs here. The manifest against
KubeRay's published RayJob CRD schema (tests/kuberay/, v1.7.0), closed to unknown keys as the API
server's strict field validation is; the operator's own rules that the schema leaves out; its
entrypoint against the sweep's own parser; no literal secret in it; and the cluster cluster.yaml
describes: a head with no CPUs for trials, GPU workers autoscaled from zero, pyproject's Ray."""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

from packaging.requirements import Requirement  # noqa: E402 (after the skip)
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.version import Version  # noqa: E402

from sweep import storage  # noqa: E402
from sweep.cli import build_parser  # noqa: E402
from sweep.specfile import load_spec  # noqa: E402
from trainables.oneline import UsageError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "cluster" / "kubernetes" / "rayjob.yaml"
CRD = Path(__file__).parent / "kuberay" / "ray.io_rayjobs.yaml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 1.4 MB: libyaml reads it in 0.5 s
SECRET_WORDS = ("SECRET", "TOKEN", "KEY", "PASSWORD")
IMAGE = re.compile(r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>3\d+)(?P<flavour>-cpu|-gpu|-cu\d+)?")
INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


# --- the schema ----------------------------------------------------------------------------------

@functools.cache
def crd() -> dict[str, Any]:
    return yaml.load(CRD.read_text(), Loader=LOADER)


def crd_schema() -> dict[str, Any]:
    (v1,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def closed(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema as the API server applies it: an object schema with
    `properties` takes no other key unless it says x-kubernetes-preserve-unknown-fields (the
    server prunes unknown fields, and rejects them with strict field validation, kubectl's
    default); `nullable` lets null through."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: closed(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not"):
            out[key] = closed(value)
        else:
            out[key] = value
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("int32")
def _int32(value: Any) -> bool:
    return not isinstance(value, int) or INT_RANGE["int32"][0] <= value <= INT_RANGE["int32"][1]


@FORMATS.checks("int64")
def _int64(value: Any) -> bool:
    return not isinstance(value, int) or INT_RANGE["int64"][0] <= value <= INT_RANGE["int64"][1]


@functools.cache
def validator(strict: bool = True) -> Any:
    schema = closed(crd_schema()) if strict else crd_schema()
    return jsonschema.Draft7Validator(schema, format_checker=FORMATS)


def schema_errors(doc: dict[str, Any], strict: bool = True) -> list[str]:
    return sorted(".".join(str(p) for p in e.absolute_path) + ": " + e.message
                  for e in validator(strict).iter_errors(doc))


# --- the manifest --------------------------------------------------------------------------------

@functools.cache
def _manifest_text() -> str:
    return MANIFEST.read_text()


def manifest() -> dict[str, Any]:
    """A fresh copy each call: the tests below break their own."""
    return yaml.safe_load(_manifest_text())


def pods(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod spec the RayJob makes, by role: head, each worker group, the submitter."""
    cluster = doc["spec"]["rayClusterSpec"]
    out = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    out.update({f"worker {g['groupName']}": g["template"]["spec"] for g in cluster["workerGroupSpecs"]})
    if "submitterPodTemplate" in doc["spec"]:
        out["submitter"] = doc["spec"]["submitterPodTemplate"]["spec"]
    return out


def containers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{role} {c['name']}", c) for role, pod in pods(doc).items()
            for c in pod.get("initContainers", []) + pod["containers"]]


def ray_container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]  # KubeRay's RayContainerIndex


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def gpu_groups(doc: dict[str, Any]) -> list[dict[str, Any]]:
    def limits(group: dict[str, Any]) -> dict[str, Any]:
        return ray_container(group["template"]["spec"]).get("resources", {}).get("limits", {})
    return [g for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"] if "nvidia.com/gpu" in limits(g)]


@functools.cache
def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on; the suite's venv has it
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def ray_requirement() -> Requirement:
    (ray,) = [r for r in map(Requirement, pyproject()["project"]["dependencies"]) if r.name == "ray"]
    return ray


# --- 1. KubeRay's CRD schema ---------------------------------------------------------------------

def test_the_crd_is_kuberays_rayjob_as_published():
    readme = (CRD.parent / "README.md").read_text()
    assert hashlib.sha256(CRD.read_bytes()).hexdigest() in readme  # the file as fetched, unedited
    spec = crd()["spec"]
    assert (spec["group"], spec["names"]["kind"]) == ("ray.io", "RayJob")
    (v1,) = [v for v in spec["versions"] if v["name"] == "v1"]
    assert v1["served"] and v1["storage"]
    jsonschema.Draft7Validator.check_schema(closed(crd_schema()))


def test_manifest_is_a_valid_rayjob():
    docs = list(yaml.safe_load_all(_manifest_text()))
    assert len(docs) == 1, "the RayJob alone: Secrets are made with kubectl, never written here"
    doc = docs[0]
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    assert schema_errors(doc) == []
    # ObjectMeta is the API server's, not the CRD's; KubeRay's ValidateRayJobMetadata: a DNS-1035
    # label of at most 47 characters (its RayCluster's name gets a suffix)
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert len(doc["metadata"]["name"]) <= 47


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def apply(doc: dict) -> None:
        _parent(doc, path)[path[-1]] = value
    return apply


def _rename(path: tuple, new: str) -> Callable[[dict], None]:
    def apply(doc: dict) -> None:
        node = _parent(doc, path)
        node[new] = node.pop(path[-1])
    return apply


CLUSTER = ("spec", "rayClusterSpec")
HEAD = (*CLUSTER, "headGroupSpec")
WORKERS = (*CLUSTER, "workerGroupSpecs", 0)
WORKER = (*WORKERS, "template", "spec", "containers", 0)
TOKEN_ENV = (*WORKER, "env", 1)  # RAY_AUTH_TOKEN

TYPOS = {  # a key misspelt: the CRD's schema alone takes each (no key is required there)
    "rayClusterSpecc": _rename(CLUSTER, "rayClusterSpecc"),
    "enableInTreeAutoscalling": _rename((*CLUSTER, "enableInTreeAutoscaling"), "enableInTreeAutoscalling"),
    "shutdownAfterJobFinish": _rename(("spec", "shutdownAfterJobFinishes"), "shutdownAfterJobFinish"),
    "idleTimeoutSecond": _rename((*CLUSTER, "autoscalerOptions", "idleTimeoutSeconds"), "idleTimeoutSecond"),
    "imagee": _rename((*WORKER, "image"), "imagee"),
    "valueFrm": _rename((*TOKEN_ENV, "valueFrom"), "valueFrm"),
    "secretKeyReff": _rename((*TOKEN_ENV, "valueFrom", "secretKeyRef"), "secretKeyReff"),
}


@pytest.mark.parametrize("key", TYPOS)
def test_a_misspelt_key_is_rejected(key):
    doc = manifest()
    TYPOS[key](doc)
    errors = schema_errors(doc)
    assert any(f"'{key}' was unexpected" in e for e in errors), errors
    assert schema_errors(doc, strict=False) == []  # why the validator closes the CRD's objects


def test_a_misspelt_required_key_is_rejected():
    doc = manifest()
    _rename((*WORKERS, "minReplicas"), "minReplica")(doc)
    errors = schema_errors(doc)
    assert any("'minReplica' was unexpected" in e for e in errors), errors
    assert any("'minReplicas' is a required property" in e for e in errors), errors


WRONG = {  # a value of the wrong type or form, and what the schema says of it
    "minReplicas zero": ((*WORKERS, "minReplicas"), "zero", "'zero' is not of type 'integer'"),
    "maxReplicas 4.5": ((*WORKERS, "maxReplicas"), 4.5, "4.5 is not of type 'integer'"),
    "replicas 2**31": ((*WORKERS, "replicas"), 2**31, "is not a 'int32'"),
    "num-cpus 0 unquoted": ((*HEAD, "rayStartParams", "num-cpus"), 0, "0 is not of type 'string'"),
    "shutdown yes": (("spec", "shutdownAfterJobFinishes"), "yes", "'yes' is not of type 'boolean'"),
    "auth mode tokens": ((*CLUSTER, "authOptions", "mode"), "tokens", "is not one of ['disabled', 'token']"),
    "gpu one": ((*WORKER, "resources", "limits", "nvidia.com/gpu"), "one", "'one' does not match"),
    "env a mapping": ((*WORKER, "env"), {"name": "RAY_AUTH_MODE"}, "is not of type 'array'"),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_value_is_rejected(case):
    path, value, words = WRONG[case]
    doc = manifest()
    _set(path, value)(doc)
    errors = schema_errors(doc)
    assert any(words in e for e in errors), errors


def test_kuberays_own_rules_hold():
    """What KubeRay v1.7.0's ValidateRayJobSpec/ValidateRayClusterSpec check beyond the schema
    (ray-operator/controllers/ray/utils/validation.go), for the fields this manifest uses."""
    doc = manifest()
    spec, cluster = doc["spec"], doc["spec"]["rayClusterSpec"]
    assert not spec.get("suspend") or spec["shutdownAfterJobFinishes"]
    assert spec.get("ttlSecondsAfterFinished", 0) >= 0 and spec.get("backoffLimit", 0) >= 0
    assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
    # submitterPodTemplate is for K8sJobMode (the default); SidecarMode refuses it
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert pods(doc)["submitter"].get("restartPolicy") in ("Never", "OnFailure")  # a Job's pod
    # token authentication needs rayVersion 2.52.0 or later, and no K8s-token auth in a RayJob
    assert Version(cluster["rayVersion"]) >= Version("2.52.0")
    assert not cluster["authOptions"].get("enableK8sTokenAuth")
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert group["template"]["spec"]["containers"]
        assert "labels" not in group.get("rayStartParams", {})
        # resources in rayStartParams (num-cpus...) and the group's `resources` field: one or the other
        params = group.get("rayStartParams", {})
        if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            assert not group.get("resources")
    for g in cluster["workerGroupSpecs"]:
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
        assert not g.get("suspend")  # no suspended group with the autoscaler on


# --- 2. the entrypoint ---------------------------------------------------------------------------

def test_entrypoint_is_a_command_the_sweep_accepts():
    words = shlex.split(manifest()["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "sweep"], words
    args = build_parser().parse_args(words[3:])
    assert args.command == "run"
    assert (ROOT / args.spec).is_file(), f"{args.spec} is not in the repository"
    assert args.address == "auto"  # the RayJob's cluster, which the driver runs on
    assert storage.scheme(args.storage) == "s3" and storage.credential_problem(args.storage) is None
    spec = load_spec(ROOT / args.spec, settings=args.settings, name=args.name, storage=args.storage)
    # every trial asks for a GPU share, which only the GPU group offers: the head (0 CPUs) runs none
    assert spec.resources.gpu > 0
    # the GPU's trials all fit the worker's CPUs (paper.yaml: four trials of 1 CPU on each GPU)
    (group,) = gpu_groups(manifest())
    limits = ray_container(group["template"]["spec"])["resources"]["limits"]
    gpus = float(limits["nvidia.com/gpu"])
    assert float(limits["cpu"]) >= spec.resources.cpu * int(gpus / spec.resources.gpu)


@pytest.mark.parametrize("entrypoint", [
    "python -m sweep run",                                              # no spec
    "python -m sweep run sweep/specs/paper.yaml --adress auto",         # a misspelt option
    "python -m sweep launch sweep/specs/paper.yaml",                    # no such command
])
def test_a_broken_entrypoint_is_refused(entrypoint):
    with pytest.raises(UsageError):
        build_parser().parse_args(shlex.split(entrypoint)[3:])


def test_runtime_env_brings_the_project():
    env = yaml.safe_load(manifest()["spec"]["runtimeEnvYAML"])
    assert set(env) <= {"working_dir", "pip", "env_vars"}
    # a remote zip: the submitter has no checkout to upload
    assert re.fullmatch(r"https://\S+\.zip", env["working_dir"])
    # pip: pyproject's dependencies, all but Ray (the image's; a runtime env must not reinstall it)
    deps = [d for d in pyproject()["project"]["dependencies"] if Requirement(d).name != "ray"]
    assert sorted(env["pip"]) == sorted(deps)
    for name in env.get("env_vars", {}):
        assert not any(w in name.upper() for w in SECRET_WORDS), name


# --- 3. secrets, the cluster's shape, the images ------------------------------------------------

def secret_problems(doc: dict[str, Any], text: str) -> list[str]:
    """Why a manifest would hold a credential: an env var named like one (SECRET, TOKEN, KEY,
    PASSWORD) that is not a secretKeyRef, envFrom other than a Secret, AWS keys in the
    environment at all (Ray Tune copies AWS_SECRET_ACCESS_KEY into its trials' runtime env, which
    Ray logs), or text shaped like a key."""
    out = []
    for where, c in containers(doc):
        for e in c.get("env", []):
            if any(w in e["name"].upper() for w in SECRET_WORDS):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                if "value" in e or not (ref.get("name") and ref.get("key")):
                    out.append(f"{where}: {e['name']} is not from a Secret")
        out += [f"{where}: envFrom {src}" for src in c.get("envFrom", [])
                if set(src) - {"secretRef", "prefix"}]
        out += [f"{where}: {name} in the environment" for name in
                sorted({"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"} & set(env_of(c)))]
    shapes = {
        "an AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        "a credentials file's line": r"(?i)aws_secret_access_key\s*[=:]",
        "a secret key's shape": r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        "a hex token": r"\b[0-9a-f]{32,}\b",
    }
    out += [f"text: {what}" for what, pattern in shapes.items() if re.search(pattern, text)]
    return out


def test_no_literal_credential():
    assert secret_problems(manifest(), _manifest_text()) == []


def _add_env(entry: dict[str, Any]) -> Callable[[dict], None]:
    return lambda doc: ray_container(pods(doc)["submitter"])["env"].append(entry)


LEAKS = {
    "token as a value": (_set(TOKEN_ENV, {"name": "RAY_AUTH_TOKEN", "value": "x"}),
                         "RAY_AUTH_TOKEN is not from a Secret"),
    "a password": (_add_env({"name": "REDIS_PASSWORD", "value": "x"}), "REDIS_PASSWORD is not from a Secret"),
    "AWS key from a Secret still": (
        _add_env({"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        "AWS_SECRET_ACCESS_KEY in the environment"),
    "envFrom a ConfigMap": (
        lambda doc: ray_container(pods(doc)["head"]).setdefault("envFrom", []).append(
            {"configMapRef": {"name": "keys"}}),
        "envFrom"),
}


@pytest.mark.parametrize("case", LEAKS)
def test_a_literal_credential_is_found(case):
    change, words = LEAKS[case]
    doc = manifest()
    change(doc)
    problems = secret_problems(doc, _manifest_text())
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "AWS_ACCESS_KEY_ID: AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "value: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "value: 3f2a9c4e1b7d8f6a0c5e2b9d4f7a1c3e",
])
def test_a_key_in_the_text_is_found(line):
    assert secret_problems(manifest(), _manifest_text() + f"\n# {line}\n")


def test_s3_credentials_come_from_a_mounted_secret_file():
    for role, pod in pods(manifest()).items():
        if role == "submitter":
            continue  # `ray job submit` only: no storage
        c = ray_container(pod)
        path = env_of(c)["AWS_SHARED_CREDENTIALS_FILE"]["value"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        (mount,) = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] and mount.get("readOnly"), role
        inside = path[len(mount["mountPath"].rstrip("/")) + 1:]
        assert inside in [i["path"] for i in secret.get("items", [])] or not secret.get("items"), role


def test_ray_token_authentication_from_a_secret():
    doc = manifest()
    auth = doc["spec"]["rayClusterSpec"]["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    for where, c in containers(doc):
        env = env_of(c)
        assert env["RAY_AUTH_MODE"].get("value") == "token", where
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (auth["secretName"], "auth_token"), where  # KubeRay's key


def test_the_cluster_is_cluster_yamls():
    doc = manifest()
    aws = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cluster = doc["spec"]["rayClusterSpec"]
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the string: rayStartParams are strings
    assert aws["available_node_types"]["head"]["resources"] == {"CPU": 0}
    for part in ("requests", "limits"):
        assert "nvidia.com/gpu" not in ray_container(head["template"]["spec"])["resources"].get(part, {})
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] == 60 * aws["idle_timeout_minutes"]
    (group,) = gpu_groups(doc)
    assert group is cluster["workerGroupSpecs"][0] and len(cluster["workerGroupSpecs"]) == 1
    assert group["minReplicas"] == 0 and group.get("replicas", 0) == 0
    assert group["maxReplicas"] == aws["available_node_types"]["gpu_worker"]["max_workers"] >= 1
    res = ray_container(group["template"]["spec"])["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == 1


def test_images_are_pyprojects_ray():
    doc = manifest()
    images = [(where, c["image"]) for where, c in containers(doc)]
    if "image" in doc["spec"]["rayClusterSpec"].get("autoscalerOptions", {}):
        images.append(("autoscaler", doc["spec"]["rayClusterSpec"]["autoscalerOptions"]["image"]))
    ray = ray_requirement()
    pythons = set()
    for where, image in images:
        m = IMAGE.fullmatch(image)
        assert m, f"{where}: {image} is not a rayproject/ray:VERSION-pyXY[-cpu|-gpu|-cuNNN] tag"
        assert ray.specifier.contains(m["ray"]), f"{where}: Ray {m['ray']} outside pyproject's {ray}"
        assert m["ray"] == doc["spec"]["rayClusterSpec"]["rayVersion"], where
        pythons.add(m["py"])
        if where.startswith("worker"):
            assert re.fullmatch(r"-gpu|-cu\d+", m["flavour"] or ""), f"{where}: {image} has no CUDA"
    assert len(pythons) == 1, f"one Python on every node: {pythons}"
    py = pythons.pop()
    requires = pyproject()["project"]["requires-python"]
    assert Version(f"{py[0]}.{py[1:]}") in SpecifierSet(requires)


def test_manifest_says_how_to_make_its_secrets():
    """The comments give a `kubectl create secret` line for each Secret the manifest names."""
    doc = manifest()
    named = {doc["spec"]["rayClusterSpec"]["authOptions"]["secretName"]}
    for _, c in containers(doc):
        named |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                  if "secretKeyRef" in e.get("valueFrom", {})}
    for pod in pods(doc).values():
        named |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    comments = "\n".join(line.split("#", 1)[1] for line in _manifest_text().splitlines() if "#" in line)
    for name in named:
        assert re.search(rf"kubectl create secret generic {re.escape(name)} --from-", comments), name
    assert "kubectl apply -f cluster/kubernetes/rayjob.yaml" in comments


def test_closed_schema_keeps_what_the_crd_allows_open():
    """The validator closes only objects with declared properties: maps (rayStartParams, labels,
    resources) stay open, as in the CRD."""
    doc = manifest()
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] = "0.0.0.0"
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"].setdefault("metadata", {})[
        "labels"] = {"app": "amortization-gap"}
    assert schema_errors(doc) == []
