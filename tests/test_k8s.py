"""The Kubernetes manifests in k8s/: they render, validate against real schemas, and agree with
the repo (jobs, configs, pinned versions, Dockerfile). Offline: kubectl (for `kubectl kustomize`),
the KubeRay CRDs in ../shared/kuberay-crds and the schemas kubernetes-validate ships.
What only a real cluster can show is listed in k8s/README.md."""
from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import k8s_schema as ks

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
OVERLAYS = ("cpu", "gpu", "scale")
# The image each overlay deploys (scale is the gpu overlay with the 1B plan's sizes, docs/SCALE.md).
IMAGE_VARIANT = {"cpu": "cpu", "gpu": "gpu", "scale": "gpu"}
CRD_DIR = Path(os.environ.get("RAYRAG_KUBERAY_CRDS") or REPO.parent / "shared" / "kuberay-crds" / "v1.7.0")
CRD_FILES = {("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml", ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
             ("ray.io/v1", "RayService"): "ray.io_rayservices.yaml"}
BUILTIN_KINDS = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
                 ("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                 ("networking.k8s.io/v1", "NetworkPolicy")}
# The jobs in jobs/ that work on data, each run by at least one RayJob; quickstart is a local demo of all of them.
EXPECTED_JOBS = {"encode", "index", "evaluate", "mine", "train_dense", "train_reranker", "rewrite", "teacher_scores",
                 "train_sparse", "evaluate_mtrag", "cot", "train_reasoning"}
IMAGE_REPO = "ghcr.io/rayrag/rayrag"
NAMESPACE = "rayrag"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def kubectl() -> str:
    exe = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").is_file() else None)
    if exe is None:
        pytest.fail("kubectl not found on PATH: it is needed for `kubectl kustomize` (install kubectl >= 1.27)")
    return exe


@functools.lru_cache(maxsize=None)
def _render(path: str) -> tuple[str, str, int]:
    proc = subprocess.run([kubectl(), "kustomize", path], capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr, proc.returncode


def render(overlay: str) -> list[dict]:
    out, err, rc = _render(str(K8S / "overlays" / overlay))
    assert rc == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{err}"
    docs = ks.load_all(out)
    assert docs, f"k8s/overlays/{overlay} rendered nothing"
    return docs


def crd_path(doc: dict) -> Path:
    name = CRD_FILES[(doc["apiVersion"], doc["kind"])]
    path = CRD_DIR / name
    if not path.is_file():
        pytest.fail(f"KubeRay CRD {path} not found: set RAYRAG_KUBERAY_CRDS to the folder with {name}")
    return path


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def ray_cluster_specs(doc: dict) -> list[tuple[str, dict]]:
    if doc["kind"] == "RayCluster":
        return [(f"RayCluster/{doc['metadata']['name']}", doc["spec"])]
    if doc["kind"] == "RayJob" and "rayClusterSpec" in doc["spec"]:
        return [(f"RayJob/{doc['metadata']['name']}", doc["spec"]["rayClusterSpec"])]
    if doc["kind"] == "RayService":
        return [(f"RayService/{doc['metadata']['name']}", doc["spec"]["rayClusterConfig"])]
    return []


def pod_templates(doc: dict) -> list[tuple[str, str, dict]]:
    """(where, role, pod template) of every pod an object makes; role is ray|submitter|other."""
    out = []
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] in ("Deployment", "StatefulSet"):
        out.append((f"{name} spec.template", "other", doc["spec"]["template"]))
    for where, spec in ray_cluster_specs(doc):
        out.append((f"{where} head", "ray", spec["headGroupSpec"]["template"]))
        for g in spec.get("workerGroupSpecs", []):
            out.append((f"{where} worker group {g['groupName']}", "ray", g["template"]))
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        out.append((f"{name} submitter", "submitter", doc["spec"]["submitterPodTemplate"]))
    return out


def containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_pod_templates(docs):
    return [t for d in docs for t in pod_templates(d)]


def matches(selector: dict, labels: dict) -> bool:
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist) against pod labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        ok = {"In": labels.get(k) in vals, "NotIn": labels.get(k) not in vals,
              "Exists": k in labels, "DoesNotExist": k not in labels}[op]
        if not ok:
            return False
    return True


@functools.lru_cache(maxsize=None)
def ray_version() -> str:
    pins = re.findall(r"^ray==([0-9][^\s;#]*)", (REPO / "constraints.txt").read_text(), re.M)
    assert len(pins) == 1, f"constraints.txt must pin ray exactly once, found {pins}"
    return pins[0]


@functools.lru_cache(maxsize=None)
def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def image_tag(variant: str) -> str:
    return f"{project_version()}-ray{ray_version()}-{variant}"


def parse_entrypoint(entrypoint: str) -> tuple[str, str, list[str]]:
    """`python -m jobs.<name> --config <file> [key=value ...]` -> (name, file, overrides)."""
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."), \
        f"entrypoint must be `python -m jobs.<name> ...`: {entrypoint!r}"
    assert argv[3] == "--config", f"entrypoint must pass --config right after the module: {entrypoint!r}"
    return argv[2].removeprefix("jobs."), argv[4], argv[5:]


def job_config(job: dict):
    from rayrag.cli import JOBS
    from rayrag.config import load_config

    name, config, overrides = parse_entrypoint(job["spec"]["entrypoint"])
    return load_config(JOBS[name.replace("_", "-")].config, REPO / config, overrides)


# ------------------------------------------------------------------------------------------
# 1. rendering
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay):
    docs = render(overlay)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    for expected in [("Namespace", NAMESPACE), ("RayCluster", "rayrag"), ("Deployment", "mlflow"),
                     ("Service", "mlflow"), ("StatefulSet", "postgres"), ("Service", "postgres"),
                     ("ConfigMap", "rayrag-env"), ("PersistentVolumeClaim", "rayrag-data"),
                     ("PersistentVolumeClaim", "mlflow-artifacts")]:
        assert expected in kinds, f"{overlay}: {expected} missing from the render"
    assert len(of_kind(docs, "RayJob")) == len(job_dirs())  # one per k8s/base/rayjobs/<job>/
    assert len(of_kind(docs, "NetworkPolicy")) == 2
    assert [d["metadata"]["name"] for d in of_kind(docs, "RayService")] == ["rayrag-serve"]
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']}/{d['metadata']['name']}"


def test_base_renders():
    out, err, rc = _render(str(K8S / "base"))
    assert rc == 0, err


# ------------------------------------------------------------------------------------------
# 1b. the RayJobs are composed, not copied: one shared RayJob, each job a short kustomization
# ------------------------------------------------------------------------------------------

RAYJOBS = K8S / "base" / "rayjobs"
COMMON_RAYJOB = RAYJOBS / "common" / "rayjob.yaml"
MAX_JOB_LINES = 40
_HEAD, _WORKER = ("spec", "rayClusterSpec", "headGroupSpec"), ("spec", "rayClusterSpec", "workerGroupSpecs", "0")
# All a job may change in the shared RayJob: paths into the rendered object, "*" any key or index.
JOB_MAY_CHANGE = [
    ("metadata", "name"), ("metadata", "labels", "app.kubernetes.io/name"), ("metadata", "labels", "rayrag/job"),
    ("spec", "entrypoint"),
    (*_WORKER, "replicas"), (*_WORKER, "minReplicas"), (*_WORKER, "maxReplicas"),
    (*_HEAD, "template", "spec", "containers", "0", "resources", "*", "*"),
    (*_WORKER, "template", "spec", "containers", "0", "resources", "*", "*"),
    (*_WORKER, "template", "spec", "volumes", "1", "emptyDir", "sizeLimit"),  # volume 1 stays shm
]


def leaves(node, path: tuple[str, ...] = ()):
    """(path, value) of every scalar, empty map and empty list in a parsed manifest."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, (*path, str(k)))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node):
            yield from leaves(v, (*path, str(i)))
    else:
        yield path, node


def job_dirs() -> list[Path]:
    return sorted(d for d in RAYJOBS.iterdir() if d.is_dir() and d.name != "common")


def test_rayjobs_are_short_kustomizations_over_the_common_rayjob():
    import yaml

    listed = yaml.safe_load((RAYJOBS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [d.name for d in job_dirs()], \
        "k8s/base/rayjobs/kustomization.yaml must list every job folder, once"
    for d in job_dirs():
        assert sorted(p.name for p in d.iterdir()) == ["kustomization.yaml"], f"{d}: one file per job"
        text = (d / "kustomization.yaml").read_text()
        assert len(text.splitlines()) < MAX_JOB_LINES, f"{d.name}: a job is a short patch of common/rayjob.yaml"
        kust = yaml.safe_load(text)
        assert kust["resources"] == ["../common"] and kust["nameSuffix"] == f"-{d.name}", d.name
    # The one RayJob manifest in k8s/: no copy of it anywhere (a job adds a folder, not a RayJob).
    manifests = [p for p in K8S.rglob("*.y*ml")
                 if any(isinstance(doc, dict) and doc.get("kind") == "RayJob" for doc in ks.load_all(p.read_text()))]
    assert manifests == [COMMON_RAYJOB], [str(p.relative_to(REPO)) for p in manifests]


def test_every_rayjob_is_the_common_rayjob_but_for_name_entrypoint_and_sizes():
    from fnmatch import fnmatchcase

    def rendered(path: Path) -> list[dict]:
        out, err, rc = _render(str(path))
        assert rc == 0, f"kubectl kustomize {path.relative_to(REPO)} failed:\n{err}"
        return of_kind(ks.load_all(out), "RayJob")

    [common] = rendered(RAYJOBS / "common")
    base = dict(leaves(common))
    jobs = rendered(RAYJOBS)
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"rayrag-{d.name}" for d in job_dirs())
    for overlay in OVERLAYS:  # every deployed RayJob is one of these
        assert {j["metadata"]["name"] for j in of_kind(render(overlay), "RayJob")} == \
            {j["metadata"]["name"] for j in jobs}, overlay
    problems = []
    for job in jobs:
        mine = dict(leaves(job))
        assert job["metadata"]["labels"]["rayrag/job"] == job["metadata"]["name"].removeprefix("rayrag-")
        assert "entrypoint" in job["spec"], job["metadata"]["name"]
        for path in sorted(set(base) | set(mine)):
            if base.get(path, KeyError) != mine.get(path, KeyError) and not any(
                    len(path) == len(p) and all(fnmatchcase(a, b) for a, b in zip(path, p)) for p in JOB_MAY_CHANGE):
                problems.append(f"{job['metadata']['name']}: {'.'.join(path)} = {mine.get(path, '<absent>')!r}, "
                                f"common/rayjob.yaml: {base.get(path, '<absent>')!r}")
    assert not problems, ("a job changes what all RayJobs share (change k8s/base/rayjobs/common/rayjob.yaml, "
                          "or allow it in JOB_MAY_CHANGE):\n" + "\n".join(problems))


def test_gpu_overlay_entrypoints_only_add_overrides():
    """The GPU overlay restates a job's entrypoint to add GPU overrides: the rest must stay the base's."""
    cpu = {j["metadata"]["name"]: shlex.split(j["spec"]["entrypoint"]) for j in of_kind(render("cpu"), "RayJob")}
    for job in of_kind(render("gpu"), "RayJob"):
        argv = shlex.split(job["spec"]["entrypoint"])
        base = cpu[job["metadata"]["name"]]
        assert argv[:len(base)] == base, f"{job['metadata']['name']}: GPU entrypoint {argv} is not {base} + overrides"
        assert all("=" in a for a in argv[len(base):]), argv


# ------------------------------------------------------------------------------------------
# 2. ray.io objects against the KubeRay CRDs; 3. built-in kinds with kubernetes-validate
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_kind_has_a_schema(overlay):
    for d in render(overlay):
        key = (d["apiVersion"], d["kind"])
        assert key in CRD_FILES or key in BUILTIN_KINDS, \
            f"{overlay}: no schema is checked for {key} ({d['metadata']['name']}); add it to this test"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_objects_match_kuberay_crds(overlay):
    ray = [d for d in render(overlay) if (d["apiVersion"], d["kind"]) in CRD_FILES]
    assert ray
    problems = []
    for d in ray:
        errors = ks.crd_errors(d, crd_path(d))
        if errors:
            problems.append(f"{d['kind']}/{d['metadata']['name']}:\n{ks.describe(errors)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_pass_kubernetes_validate_strict(overlay):
    builtin = [d for d in render(overlay) if (d["apiVersion"], d["kind"]) in BUILTIN_KINDS]
    bad = [r.line for r in ks.kubernetes_validate(builtin) if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_quantities_are_well_formed(overlay):
    problems = []
    for d in render(overlay):
        if (d["apiVersion"], d["kind"]) in BUILTIN_KINDS:
            errors = ks.builtin_errors(d)
            if errors:
                problems.append(f"{d['kind']}/{d['metadata']['name']}:\n{ks.describe(errors)}")
    assert not problems, "\n".join(problems)


def secret_templates() -> list[dict]:
    return ks.load_all((K8S / "base" / "secrets.example.yaml").read_text())


def test_secret_templates_are_valid_and_not_deployed():
    secrets = secret_templates()
    assert {s["metadata"]["name"] for s in secrets} == {"rayrag-postgres", "rayrag-api-key"}
    bad = [r.line for r in ks.kubernetes_validate(secrets) if not r.ok]
    assert not bad, "\n".join(bad)
    assert "RAYRAG_API_KEY" in one(secrets, "Secret", "rayrag-api-key")["stringData"]
    for overlay in OVERLAYS:
        # Applying an overlay must never overwrite real credentials with the placeholders.
        assert not of_kind(render(overlay), "Secret")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_references_resolve_to_the_templates(overlay):
    keys = {(s["metadata"]["name"], k) for s in secret_templates() for k in s["stringData"]}
    refs = []
    for where, _, t in all_pod_templates(render(overlay)):
        for c in containers(t):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((where, ref["name"], ref["key"]))
            for src in c.get("envFrom", []):
                assert "secretRef" not in src, f"{where}: use secretKeyRef so the key is checked"
    assert refs
    missing = [r for r in refs if (r[1], r[2]) not in keys]
    assert not missing, f"secretKeyRefs with no key in k8s/base/secrets.example.yaml: {missing}"


def test_postgres_secret_template_is_self_consistent():
    """The backend URI in the template must agree with the postgres credentials and Service,
    so filling in the same password in both places is all it takes."""
    docs = render("cpu")
    data = one(secret_templates(), "Secret", "rayrag-postgres")["stringData"]
    svc = one(docs, "Service", "postgres")
    port = svc["spec"]["ports"][0]["port"]
    assert data["MLFLOW_BACKEND_STORE_URI"] == (
        f"postgresql://{data['POSTGRES_USER']}:{data['POSTGRES_PASSWORD']}@"
        f"postgres.{NAMESPACE}.svc:{port}/{data['POSTGRES_DB']}")


# ------------------------------------------------------------------------------------------
# 4. negative fixtures: rejected for the right reason, and accepted once that one fault is fixed
# ------------------------------------------------------------------------------------------

def crd_problems(doc: dict) -> list[tuple[str, str]]:
    return [(ks.error_path(e), e.message) for e in ks.crd_errors(doc, crd_path(doc))]


def kv_problems(doc: dict) -> list[tuple[str, str]]:
    return [("", r.line) for r in ks.kubernetes_validate([doc]) if not r.ok]


def quantity_problems(doc: dict) -> list[tuple[str, str]]:
    return [(ks.error_path(e), e.message) for e in ks.builtin_errors(doc)]


NEGATIVE = [
    # fixture, checker, expected error path, text the message must contain, (fault, fix)
    ("rayjob-misspelled-field.yaml", crd_problems, "spec",
     "'entrypiont' was unexpected", ("entrypiont:", "entrypoint:")),
    ("raycluster-replicas-wrong-type.yaml", crd_problems, "spec.workerGroupSpecs.0.replicas",
     "'two' is not of type 'integer'", ('replicas: "two"', "replicas: 2")),
    ("raycluster-bad-quantity.yaml", crd_problems,
     "spec.headGroupSpec.template.spec.containers.0.resources.limits.cpu",
     "'2 cores' does not match", ('cpu: "2 cores"', 'cpu: "2"')),
    ("deployment-bad-quantity.yaml", quantity_problems,
     "spec.template.spec.containers.0.resources.limits.cpu",
     "'2 cores' is not valid under any of the given schemas", ('cpu: "2 cores"', 'cpu: "2"')),
    ("service-unknown-field.yaml", kv_problems, "",
     "service/unknown-field against version 1.32: spec: Additional properties are not allowed "
     "('targetPort' was unexpected)", ("  targetPort: 5000\n", "")),
    ("unknown-kind.yaml", kv_problems, "",
     "Couldn't find schema for kind Widget with api version example.com/v1", None),
]


@pytest.mark.parametrize("fixture,check,path,message,fix", NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_negative_fixture_is_rejected_for_the_right_reason(fixture, check, path, message, fix):
    text = (FIXTURES / fixture).read_text()
    [doc] = ks.load_all(text)
    problems = check(doc)
    assert problems, f"{fixture} was accepted"
    assert any(p == path and message in m for p, m in problems), \
        f"{fixture}: expected an error at {path!r} containing {message!r}, got {problems}"
    if fix is not None:
        fault, repair = fix
        assert text.count(fault) == 1, f"{fixture}: the fault {fault!r} must appear exactly once"
        [fixed] = ks.load_all(text.replace(fault, repair))
        assert check(fixed) == [], f"{fixture} with {fault!r} fixed must be accepted"


# ------------------------------------------------------------------------------------------
# 5. consistency with the repo
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayjob_entrypoints_name_real_jobs_and_configs(overlay):
    jobs = of_kind(render(overlay), "RayJob")
    names = set()
    for job in jobs:
        entry = job["spec"]["entrypoint"]
        name, config, overrides = parse_entrypoint(entry)
        names.add(name)
        assert (REPO / "jobs" / f"{name}.py").is_file(), f"{entry!r}: jobs/{name}.py does not exist"
        assert config.startswith("jobs/configs/") and (REPO / config).is_file(), \
            f"{entry!r}: config {config} does not exist"
        first = (REPO / config).read_text().splitlines()[0]
        assert first.startswith(f"# python -m jobs.{name} --config {config}"), \
            f"{config} is a config for another job: {first}"
        cfg = job_config(job)  # unknown keys and wrong types in the overrides fail here
        # Outputs must land on the data volume, not in a pod's filesystem that goes away.
        for key in ("output_dir", "output"):
            value = getattr(cfg, key, None)
            if value is not None:
                assert str(value).startswith("/data/"), f"{entry!r}: {key}={value} is not under /data"
        assert job["spec"].get("suspend") is True, \
            f"RayJob {job['metadata']['name']} must be created suspended (k8s/README.md: start in order)"
    assert names == EXPECTED_JOBS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_train_jobs_read_what_the_mine_job_writes(overlay):
    rayjobs = of_kind(render(overlay), "RayJob")
    jobs = {parse_entrypoint(j["spec"]["entrypoint"])[0]: j for j in rayjobs}
    mined = {job_config(j).output for j in rayjobs if parse_entrypoint(j["spec"]["entrypoint"])[0] == "mine"}
    for name in ("train_dense", "train_reranker"):
        cfg = job_config(jobs[name])
        assert cfg.examples in mined, f"{name} reads {cfg.examples}, which no mine RayJob writes ({mined})"
        gpu = IMAGE_VARIANT[overlay] == "gpu"
        assert cfg.use_gpu == gpu and cfg.bf16 == gpu
        # Ray Train's storage (checkpoints) must outlive the pods: default <output_dir>/ray on /data
        assert cfg.storage_path is None and cfg.output_dir.startswith("/data/")
        if gpu:
            gpus = jobs[name]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
            assert gpus["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_index_job_reads_what_encode_job_writes(overlay):
    rayjobs = of_kind(render(overlay), "RayJob")
    jobs = {parse_entrypoint(j["spec"]["entrypoint"])[0]: j for j in rayjobs}
    encoded = {job_config(j).output_dir for j in rayjobs if parse_entrypoint(j["spec"]["entrypoint"])[0] == "encode"}
    assert job_config(jobs["index"]).embeddings in encoded


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_version_and_image_tags_match_constraints(overlay):
    docs = render(overlay)
    rv = ray_version()
    specs = [s for d in docs for s in ray_cluster_specs(d)]
    assert len(specs) == 2 + len(job_dirs())  # RayCluster, RayService, one per RayJob
    for where, spec in specs:
        assert spec["rayVersion"] == rv, f"{where}: rayVersion {spec['rayVersion']} != ray=={rv}"
    images = {c["image"] for _, _, t in all_pod_templates(docs) for c in containers(t)}
    platform = {i for i in images if i.startswith(IMAGE_REPO + ":")}
    assert platform == {f"{IMAGE_REPO}:{image_tag(IMAGE_VARIANT[overlay])}"}, platform
    others = images - platform
    assert all(re.fullmatch(r"postgres:\d+\.\d+-\w+", i) for i in others), f"unexpected images {others}"


def test_dockerfile_base_image_matches_constraints():
    text = (REPO / "Dockerfile").read_text()
    m = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert m, "Dockerfile must have ARG BASE_IMAGE=<image> (the GPU build overrides it)"
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["${BASE_IMAGE}"], froms
    repo, _, tag = m.group(1).partition(":")
    assert repo == "rayproject/ray"
    assert re.fullmatch(rf"{re.escape(ray_version())}-py3\d+-cpu", tag), f"BASE_IMAGE tag {tag}"
    # Every rayproject/ray image named anywhere (Dockerfile comments, k8s/README.md) has the pinned Ray.
    for path in (REPO / "Dockerfile", K8S / "README.md"):
        for tag in re.findall(r"rayproject/ray:(\S+)", path.read_text()):
            assert tag.startswith(f"{ray_version()}-py"), f"{path.name}: rayproject/ray:{tag}"
        for tag in re.findall(re.escape(IMAGE_REPO) + r":([\w.-]+)", path.read_text()):
            assert tag in (image_tag("cpu"), image_tag("gpu")), f"{path.name}: {IMAGE_REPO}:{tag}"
    # Same torch as scripts/setup.sh.
    torch = re.search(r'torch_spec="\$\{RAYRAG_TORCH_SPEC-(torch==[^}]+)\}"', (REPO / "scripts/setup.sh").read_text())
    assert torch and f"ARG TORCH_SPEC={torch.group(1)}" in text


def test_pyproject_ray_range_admits_the_pinned_ray():
    from packaging.requirements import Requirement
    from packaging.version import Version

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [ray] = [Requirement(d) for d in deps if Requirement(d).name == "ray"]
    assert Version(ray_version()) in ray.specifier


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_and_container_runs_restricted(overlay):
    problems = []
    for where, _, t in all_pod_templates(render(overlay)):
        psc = t["spec"].get("securityContext", {})
        if not (psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 1000
                and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
            problems.append(f"{where}: pod securityContext {psc}")
        for c in containers(t):
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 1000
                    and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]
                    and not sc.get("capabilities", {}).get("add")
                    and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
                    and not sc.get("privileged")):
                problems.append(f"{where} container {c['name']}: securityContext {sc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay):
    problems = []
    for where, _, t in all_pod_templates(render(overlay)):
        for c in containers(t):
            r = c.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(r.get(part, {})):
                    problems.append(f"{where} container {c['name']}: no {part} for cpu and memory")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_containers_get_tracking_uri_and_data_volume(overlay):
    docs = render(overlay)
    env = one(docs, "ConfigMap", "rayrag-env")["data"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow.{NAMESPACE}.svc:5000"
    assert env["RAYRAG_DATA_DIR"].startswith("/data/")
    from rayrag.serve.ray_env import CLUSTER_ENV, LOCAL_DRAIN, PRESET

    # Serve on the cluster runs with Ray's throughput preset, as `jobs.serve run` gives a local Ray,
    # plus HAProxy; it keeps Ray's 30 s drain of stopping ingress replicas (the local Ray's is 2 s),
    # which the load balancers in front of the replicas' ports need
    assert {k: env.get(k) for k in CLUSTER_ENV} == CLUSTER_ENV and PRESET.items() <= CLUSTER_ENV.items()
    assert not LOCAL_DRAIN.keys() & (set(env) | set(CLUSTER_ENV))
    data_pvc = one(docs, "PersistentVolumeClaim", "rayrag-data")
    assert data_pvc["spec"]["accessModes"] == ["ReadWriteMany"], "head and workers of every cluster share it"
    ray_templates = [x for x in all_pod_templates(docs) if x[1] == "ray"]
    assert len(ray_templates) == 2 * (2 + len(job_dirs()))
    for where, _, t in ray_templates:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in t["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
        for c in t["spec"]["containers"]:
            assert {"configMapRef": {"name": "rayrag-env"}} in c.get("envFrom", []), f"{where}: no rayrag-env"
            names = {e["name"] for e in c.get("env", [])}
            assert not names & {"MLFLOW_TRACKING_URI", "RAYRAG_DATA_DIR", *CLUSTER_ENV}, f"{where}: overrides rayrag-env"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert claims.get(mounts.get("/data")) == "rayrag-data", f"{where}: /data is not the data PVC"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_service_matches_tracking_uri_and_server(overlay):
    docs = render(overlay)
    uri = one(docs, "ConfigMap", "rayrag-env")["data"]["MLFLOW_TRACKING_URI"]
    m = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)", uri)
    assert m, uri
    svc = one(docs, "Service", m.group(1))
    assert m.group(2) == NAMESPACE and svc["spec"]["ports"][0]["port"] == int(m.group(3))
    dep = one(docs, "Deployment", "mlflow")
    pod = dep["spec"]["template"]
    assert matches({"matchLabels": svc["spec"]["selector"]}, pod["metadata"]["labels"])
    [c] = pod["spec"]["containers"]
    args = c["command"] + c["args"]
    assert args[:2] == ["mlflow", "server"]
    arg = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args[2:] if "=" in a}
    assert "--serve-artifacts" in args and arg["--artifacts-destination"].startswith("/")
    mounts = [m_["mountPath"] for m_ in c["volumeMounts"]]
    assert arg["--artifacts-destination"] in mounts, "artifacts must land on the mounted PVC"
    host = f"{m.group(1)}.{m.group(2)}.svc:{m.group(3)}"
    assert host in arg["--allowed-hosts"].split(","), "MLflow would answer 403 to the tracking URI's Host"
    assert int(arg["--port"]) == c["ports"][0]["containerPort"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "rayrag-postgres"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_ray_to_mlflow_and_only_mlflow_to_postgres(overlay):
    docs = render(overlay)
    # Pod labels as they will be, with the label KubeRay adds to every Ray pod it creates.
    pods = {where: (role, {**t["metadata"].get("labels", {}), **({"ray.io/is-ray-node": "yes"} if role == "ray" else {})})
            for where, role, t in all_pod_templates(docs)}

    def admitted(policy: dict, port: int) -> set[str]:
        out = set()
        for rule in policy["spec"]["ingress"]:
            assert all(set(p) == {"podSelector"} for p in rule["from"]), "same-namespace pod peers only"
            if not any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in rule["ports"]):
                continue
            out |= {w for w, (_, labels) in pods.items()
                    if any(matches(p["podSelector"], labels) for p in rule["from"])}
        return out

    for name, target, port, allowed_roles in [("mlflow-from-ray-only", "mlflow", 5000, {"ray"}),
                                              ("postgres-from-mlflow-only", "postgres", 5432, None)]:
        policy = one(docs, "NetworkPolicy", name)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        svc = one(docs, "Service", target)
        assert svc["spec"]["ports"][0]["port"] == port
        selected = {w for w, (_, labels) in pods.items() if matches(policy["spec"]["podSelector"], labels)}
        assert selected and all(target in w for w in selected), f"{name} selects {selected}"
        got = admitted(policy, port)
        if allowed_roles:
            expected = {w for w, (role, _) in pods.items() if role in allowed_roles}
        else:
            expected = {w for w in pods if "Deployment/mlflow" in w}
        assert got == expected, f"{name}: admits {sorted(got)}, expected {sorted(expected)}"
    # Without KubeRay's label, our own labels alone still admit every Ray pod to MLflow.
    mlflow_policy = one(docs, "NetworkPolicy", "mlflow-from-ray-only")
    own = [p["podSelector"] for r in mlflow_policy["spec"]["ingress"] for p in r["from"]
           if "ray.io/is-ray-node" not in p["podSelector"].get("matchLabels", {})]
    for where, role, t in all_pod_templates(docs):
        if role == "ray":
            assert any(matches(s, t["metadata"]["labels"]) for s in own), where


def gpu_limit(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_cpu_overlay_asks_for_no_gpus():
    for where, _, t in all_pod_templates(render("cpu")):
        assert all(gpu_limit(c) == 0 for c in containers(t)), where
    encode = one(render("cpu"), "RayJob", "rayrag-encode")
    assert job_config(encode).gpus_per_actor == 0


def test_gpu_overlay_gives_gpus_to_workers_that_use_them():
    docs = render("gpu")
    for d in docs:
        for where, spec in ray_cluster_specs(d):
            head = spec["headGroupSpec"]["template"]
            assert all(gpu_limit(c) == 0 for c in containers(head)), f"{where}: GPU on the head"
    cluster = one(docs, "RayCluster", "rayrag")
    for g in cluster["spec"]["workerGroupSpecs"]:
        assert all(gpu_limit(c) >= 1 for c in g["template"]["spec"]["containers"])
        assert any(t.get("key") == "nvidia.com/gpu" for t in g["template"]["spec"].get("tolerations", []))
    encode = one(docs, "RayJob", "rayrag-encode")
    cfg = job_config(encode)
    assert cfg.gpus_per_actor >= 1
    workers = encode["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * gpu_limit(g["template"]["spec"]["containers"][0]) for g in workers)
    assert cfg.num_actors * cfg.gpus_per_actor <= gpus, "encode actors would wait for GPUs forever"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encode_actors_fit_the_job_cluster(overlay):
    encode = one(render(overlay), "RayJob", "rayrag-encode")
    cfg = job_config(encode)
    spec = encode["spec"]["rayClusterSpec"]
    cpus = sum(g["replicas"] * float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
               for g in spec["workerGroupSpecs"])
    assert cfg.num_actors * cfg.cpus_per_actor <= cpus


# ------------------------------------------------------------------------------------------
# RayService: the Serve app, kept in sync with the repo's Serve config
# ------------------------------------------------------------------------------------------

def rayservice_build_command() -> list[str]:
    """The `python -m jobs.serve build ...` line in rayservice.yaml's header comment."""
    text = (K8S / "base" / "rayservice.yaml").read_text()
    m = re.search(r"^#\s+(python -m jobs\.serve build .*)$", text, re.M)
    assert m, "rayservice.yaml must say in a comment how its serveConfigV2 is generated"
    return shlex.split(m.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_serve_config_is_the_repo_config_rebuilt(overlay):
    """serveConfigV2 == `jobs.serve build` of jobs/configs/serve/ with the overrides its header names."""
    import yaml

    from rayrag.serve.serve_yaml import read, serve_config

    argv = rayservice_build_command()
    assert argv[:5] == ["python", "-m", "jobs.serve", "build", "--config"]
    config, rest = argv[5], argv[6:]
    assert config.startswith("jobs/configs/serve/") and (REPO / config).is_file()
    assert rest[:2] == ["--host", "0.0.0.0"], "pods must accept traffic from the Service"
    _, cfg = read(REPO / config, rest[2:])  # bad keys or types in the overrides fail here
    [svc] = of_kind(render(overlay), "RayService")
    deployed = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert deployed == serve_config(cfg, host="0.0.0.0", port=8000), \
        "serveConfigV2 is out of date: rerun the command in k8s/base/rayservice.yaml's header"
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(deployed)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_serves_what_the_index_job_writes_with_the_api_key_secret(overlay):
    import yaml

    from rayrag.serve.serve_yaml import app_config

    docs = render(overlay)
    [svc] = of_kind(docs, "RayService")
    app = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"][0]
    cfg = app_config(app)  # args + the index section of the Retriever's user_config
    jobs = {parse_entrypoint(j["spec"]["entrypoint"])[0]: j for j in of_kind(docs, "RayJob")}
    assert cfg.index == job_config(jobs["index"]).output_dir
    assert cfg.auth.required and cfg.auth.api_key_file
    key_dir, key_name = cfg.auth.api_key_file.rsplit("/", 1)
    keys = {(s["metadata"]["name"], k) for s in secret_templates() for k in s["stringData"]}
    spec = svc["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for g in groups:  # a replica may land on any node: every node needs the key file
        pod = g["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        [c] = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert (secrets.get(mounts.get(key_dir)), key_name) in keys, f"{key_dir}/{key_name} is not a Secret key"
        assert {"name": "serve", "containerPort": 8000, "protocol": "TCP"} in c.get("ports", [])
    cpus = sum(float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) * g.get("replicas", 1)
               for g in groups)
    need = cfg.ingress.num_cpus + cfg.rerank.num_cpus + cfg.retriever.num_cpus * (
        cfg.retriever.autoscaling.max_replicas if cfg.retriever.autoscaling else cfg.retriever.num_replicas)
    assert need <= cpus, f"Serve replicas need {need} CPUs; the RayService cluster has {cpus}"
