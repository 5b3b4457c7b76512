"""Every file in ``cluster/`` passes :mod:`tools.check_cluster`; the validator rejects bad ones by name.

Also the safe defaults the recipes promise: token auth, loopback dashboards and MLflow, no secrets in
files, and no credential-looking value logged as an MLflow param (a real SQLite store in ``tmp_path``).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from mlflow_helpers import client
from paths import REPO

from tools.check_cluster import (
    ClusterConfigError,
    Problem,
    check_dir,
    is_reference,
    is_secret_key,
    main,
    ms2l_commands,
    validate_dir,
    validate_file,
)

CLUSTER = REPO / "cluster"
FILES = sorted(p.name for p in CLUSTER.iterdir() if p.is_file())


def test_cluster_dir_holds_every_recipe() -> None:
    assert {"README.md", "cluster-aws.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml", "runtime_env.yaml",
            "mlflow-server.sh"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_shipped_file_is_valid(name: str) -> None:
    problems = validate_file(CLUSTER / name, REPO)
    assert problems == [], "\n".join(map(str, problems))


def test_validate_dir_and_cli_agree_the_shipped_dir_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_dir(CLUSTER, REPO) == []
    check_dir(CLUSTER, REPO)  # raises on any problem
    assert main([str(CLUSTER)]) == 0
    assert "ok" in capsys.readouterr().out


def test_readme_commands_are_checked_against_the_cli() -> None:
    """The README's ms2l lines are found (so they are validated) and cover the documented workflow."""
    text = (CLUSTER / "README.md").read_text()
    argvs = [argv for _, argv in ms2l_commands(text)]
    assert {a[0] for a in argvs} >= {"ablate", "tune", "report"}
    ablate = [a for a in argvs if a[0] == "ablate"]
    assert any("--resume" in a for a in ablate)
    assert any(a[a.index("--gpus-per-trial") + 1] == "0.5" for a in ablate if "--gpus-per-trial" in a)
    assert any(a[a.index("--storage-path") + 1].startswith("s3://") for a in ablate)
    for needle in ("ray up cluster/cluster-aws.yaml", "ray job stop", "--runtime-env cluster/runtime_env.yaml",
                   "kubectl port-forward", "ssh -N -L", "idle_timeout_minutes", "--num-samples", "spot"):
        assert needle in text


def test_rayjob_runs_the_task_ablation_on_shared_storage() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    [(_, argv)] = ms2l_commands(job["spec"]["entrypoint"])
    assert argv[:2] == ["ablate", "ablations/tasks.yaml"]
    storage = argv[argv.index("--storage-path") + 1]
    mounts = [m["mountPath"] for c in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
              for m in c.get("volumeMounts", [])]
    assert any(storage.startswith(m) for m in mounts) or storage.startswith(("s3://", "gs://"))


def test_configs_keep_token_auth_and_loopback_dashboards() -> None:
    aws = yaml.safe_load((CLUSTER / "cluster-aws.yaml").read_text())
    starts = [c for c in aws["head_start_ray_commands"] + aws["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert "--dashboard-host=127.0.0.1" in " ".join(aws["head_start_ray_commands"])
    assert aws["idle_timeout_minutes"] <= 10
    gpu = [t for t in aws["available_node_types"].values() if t["resources"].get("GPU")]
    assert gpu and all(t.get("min_workers", 0) == 0 for t in gpu)
    rc = yaml.safe_load_all((CLUSTER / "kuberay-raycluster.yaml").read_text())
    cluster = next(d for d in rc if d["kind"] == "RayCluster")
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e for e in worker["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    assert "secretKeyRef" in env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]


def test_runtime_env_is_accepted_by_ray() -> None:
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)
    assert all(str(v).startswith("${") for k, v in env["env_vars"].items() if k.startswith("MLFLOW_TRACKING_"))


# --- the MLflow server recipe, run for real (--dry-run prints the command it would exec) ---------------

def _mlflow_server(*args: str, uri: str = "postgresql://mlflow@db.internal:5432/mlflow",
                   extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_GUNICORN_OPTS", "MLFLOW_UVICORN_OPTS")}
    env.update(MLFLOW_BACKEND_STORE_URI=uri, MLFLOW_ARTIFACTS_DESTINATION="s3://bucket/mlflow", **(extra_env or {}))
    return subprocess.run(["bash", str(CLUSTER / "mlflow-server.sh"), "--dry-run", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_mlflow_server_binds_loopback_and_serves_artifacts_by_default() -> None:
    done = _mlflow_server()
    assert done.returncode == 0, done.stderr
    cmd = done.stdout.split()
    assert cmd[:2] == ["mlflow", "server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in cmd and cmd[cmd.index("--artifacts-destination") + 1] == "s3://bucket/mlflow"


EVERY = ("listens on every interface; pass --i-know-this-is-public too, or bind a private interface "
         "(--host 10.x.y.z) behind a firewall")
NOT_IP = "expected an IP address (127.0.0.1, 10.0.0.5, ::1): a name or a short form such as 0 may mean every interface"
REFUSED_BINDS = [  # (arguments, the one line on stderr): every spelling of a wide bind is caught by the script
    (["--host", "0.0.0.0"], f"--host 0.0.0.0 {EVERY}"),
    (["--host=0.0.0.0"], f"--host 0.0.0.0 {EVERY}"),
    (["-h", "0.0.0.0"], f"--host 0.0.0.0 {EVERY}"),
    (["-h0.0.0.0"], f"--host 0.0.0.0 {EVERY}"),
    (["--host", "127.0.0.1", "--host=0.0.0.0"], f"--host 0.0.0.0 {EVERY}"),  # the last one is the one mlflow takes
    (["--host", "::"], f"--host :: {EVERY}"),
    (["--host=[::]"], f"--host [::] {EVERY}"),
    (["-h", "0:0::0"], f"--host 0:0::0 {EVERY}"),
    (["--host", "0.0.0.0", "--allowed-hosts", "a:5000", "--app-name", "basic-auth"], f"--host 0.0.0.0 {EVERY}"),
    (["--host", "0"], f"--host '0': {NOT_IP}"),
    (["--host", "0x0"], f"--host '0x0': {NOT_IP}"),
    (["-h", "mlflow.internal"], f"--host 'mlflow.internal': {NOT_IP}"),
    (["--host", "::ffff:0.0.0.0"], f"--host '::ffff:0.0.0.0': {NOT_IP}"),
    (["--host", "10.0.0.5"], "--host 10.0.0.5 needs --allowed-hosts (the host:port names clients use)"),
    (["--host", "10.0.0.5", "--allowed-hosts=10.0.0.5:5000"],
     "--host 10.0.0.5 needs authentication: add --app-name basic-auth (clients send "
     "MLFLOW_TRACKING_USERNAME/PASSWORD)"),
    (["--gunicorn-opts", "--bind 0.0.0.0:5000"],
     "--gunicorn-opts is refused: its server options can bind other addresses (--bind, --host, --listen)"),
    (["--uvicorn-opts=--host 0.0.0.0"],
     "--uvicorn-opts is refused: its server options can bind other addresses (--bind, --host, --listen)"),
    (["--", "--host", "0.0.0.0"],
     "unknown option '--' (this script passes mlflow only the options it checks; see its header)"),
    (["--dev"], "unknown option '--dev' (this script passes mlflow only the options it checks; see its header)"),
    (["--host"], "--host needs a value"),
    (["-p", "0"], "--port '0': expected a port number 1-65535"),
]


@pytest.mark.parametrize(("args", "line"), REFUSED_BINDS, ids=[" ".join(a) for a, _ in REFUSED_BINDS])
def test_mlflow_server_refuses_every_spelling_of_a_wide_bind(args: list[str], line: str) -> None:
    done = _mlflow_server(*args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"mlflow-server.sh: {line}\n")


def test_mlflow_server_refuses_server_options_from_the_environment() -> None:
    done = _mlflow_server(extra_env={"MLFLOW_UVICORN_OPTS": "--host 0.0.0.0"})
    assert (done.returncode, done.stderr) == (2, "mlflow-server.sh: MLFLOW_UVICORN_OPTS is set; unset it (its server "
                                                 "options can bind other addresses than --host)\n")


def test_mlflow_server_opt_ins_hand_mlflow_only_the_checked_host() -> None:
    base = ("mlflow server --backend-store-uri postgresql://mlflow@db.internal:5432/mlflow --serve-artifacts "
            "--artifacts-destination s3://bucket/mlflow")
    cases = [
        (["--host", "10.0.0.5", "--allowed-hosts", "10.0.0.5:5000", "--app-name", "basic-auth"],
         f"{base} --host 10.0.0.5 --port 5000 --allowed-hosts 10.0.0.5:5000 --app-name basic-auth"),
        (["-h0.0.0.0", "--i-know-this-is-public", "--allowed-hosts=mlflow.example:5000", "--app-name=basic-auth",
          "-p", "5001"],
         f"{base} --host 0.0.0.0 --port 5001 --allowed-hosts mlflow.example:5000 --app-name basic-auth"),
        (["--host", "localhost", "--port=6000", "-w", "4", "--static-prefix=/mlflow"],
         f"{base} --host localhost --port 6000 -w 4 --static-prefix=/mlflow"),
        (["--host", "::1"], f"{base} --host ::1 --port 5000"),
    ]
    for args, want in cases:
        done = _mlflow_server(*args)
        assert (done.returncode, done.stdout, done.stderr) == (0, want + " \n", ""), args


def test_mlflow_server_refuses_a_password_in_the_backend_uri() -> None:
    done = _mlflow_server(uri="postgresql://mlflow:hunter2@db.internal:5432/mlflow")
    assert done.returncode == 2 and "PGPASSWORD" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr


# --- the validator rejects bad files, naming file and field ---------------------------------------------

GOOD_LAUNCHER = """
cluster_name: t
max_workers: 2
provider: {type: aws, region: us-west-2}
available_node_types:
  head: {resources: {CPU: 0}, node_config: {InstanceType: m5.large}}
  gpu: {min_workers: 0, max_workers: 2, resources: {CPU: 8, GPU: 1}, node_config: {InstanceType: g5.2xlarge}}
head_node_type: head
head_start_ray_commands:
  - RAY_AUTH_MODE=token ray start --head --port=6379 --dashboard-host=127.0.0.1
worker_start_ray_commands:
  - RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379
"""

GOOD_RAYJOB = """
apiVersion: ray.io/v1
kind: RayJob
metadata: {name: t}
spec:
  entrypoint: ms2l ablate ablations/smoke.yaml --gpus-per-trial 0.5 --name t
  rayClusterSpec:
    authOptions: {mode: token}
    enableInTreeAutoscaling: true
    headGroupSpec:
      rayStartParams: {}
      template: {spec: {containers: [{name: head, image: rayproject/ray:2.60.0}]}}
    workerGroupSpecs:
      - groupName: gpu
        template: {spec: {containers: [{name: w, image: rayproject/ray:2.60.0}]}}
"""

GOOD_RUNTIME_ENV = """
working_dir: .
excludes: [.git, mlruns, mlflow.db, ray_results, outputs, .venv*, __pycache__]
env_vars: {MLFLOW_TRACKING_URI: "${MLFLOW_TRACKING_URI}"}
"""


def _with_env_var(entry: str) -> str:
    return GOOD_RUNTIME_ENV.replace('"${MLFLOW_TRACKING_URI}"}', f'"${{MLFLOW_TRACKING_URI}}", {entry}}}')


def _problems(tmp_path: Path, name: str, text: str) -> list[Problem]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return validate_file(path, REPO)


def _fields(problems: list[Problem]) -> list[str]:
    return [p.field for p in problems]


def test_good_examples_pass(tmp_path: Path) -> None:
    for name, text in (("l.yaml", GOOD_LAUNCHER), ("j.yaml", GOOD_RAYJOB), ("r.yaml", GOOD_RUNTIME_ENV)):
        assert _problems(tmp_path, name, text) == [], name


@pytest.mark.parametrize(("text", "drop", "field"), [
    (GOOD_LAUNCHER, "head_node_type: head\n", "head_node_type"),
    (GOOD_LAUNCHER, "max_workers: 2\n", "max_workers"),
    (GOOD_RAYJOB, "  entrypoint: ms2l ablate ablations/smoke.yaml --gpus-per-trial 0.5 --name t\n", "spec.entrypoint"),
    (GOOD_RAYJOB, "apiVersion: ray.io/v1\n", "apiVersion"),
    (GOOD_RUNTIME_ENV, "working_dir: .\n", "working_dir"),
])
def test_missing_field_is_named(tmp_path: Path, text: str, drop: str, field: str) -> None:
    assert drop in text
    problems = _problems(tmp_path, "bad.yaml", text.replace(drop, ""))
    assert field in _fields(problems), problems
    assert all(p.file.endswith("bad.yaml") for p in problems)


def test_missing_worker_groups_and_excludes_are_named(tmp_path: Path) -> None:
    rc = GOOD_RAYJOB.replace("kind: RayJob", "kind: RayCluster").replace("  rayClusterSpec:\n", "  x:\n")
    assert "spec.headGroupSpec" in _fields(_problems(tmp_path, "rc.yaml", rc))
    env = GOOD_RUNTIME_ENV.replace(", mlflow.db", "")
    [problem] = _problems(tmp_path, "env.yaml", env)
    assert problem.field == "excludes" and "'mlflow.db'" in problem.message


@pytest.mark.parametrize(("entrypoint", "message"), [
    ("ms2l ablation ablations/smoke.yaml", "unknown subcommand `ms2l ablation`"),
    ("ms2l ablate ablations/smoke.yaml --gpus-per-trail 1", "has no option --gpus-per-trail"),
    ("ms2l ablate ablations/smoke.yaml --gpus-per-trial lots", "invalid float value: 'lots'"),
    ("ms2l ablate ablations/no-such-grid.yaml", "names ablations/no-such-grid.yaml, which is not in the repository"),
    ("ms2l tune", "the following arguments are required: space"),
    ("python -m ms2l_ray.cli ablate ablations/smoke.yaml --seeds 3", "has no option --seeds"),
])
def test_bad_ms2l_entrypoint_is_rejected(tmp_path: Path, entrypoint: str, message: str) -> None:
    text = GOOD_RAYJOB.replace("ms2l ablate ablations/smoke.yaml --gpus-per-trial 0.5 --name t", entrypoint)
    problems = _problems(tmp_path, "job.yaml", text)
    assert [p.field for p in problems] == ["spec.entrypoint"], problems
    assert message in problems[0].message
    assert str(problems[0]).startswith(f"{tmp_path / 'job.yaml'}: spec.entrypoint: ")


def test_bad_command_in_docs_names_the_line(tmp_path: Path) -> None:
    doc = "# Run\n\nText.\n\n```bash\nray job submit --working-dir . -- \\\n  ms2l ablate ablations/smoke.yaml \\\n" \
          "  --max-concurent 2\n```\n\nAlso `ms2l fly` in prose is not a command line.\n"
    [problem] = _problems(tmp_path, "doc.md", doc)
    assert problem.field == "line 6" and "--max-concurent" in problem.message
    sh = "#!/bin/sh\nset -e\ncd /srv && ms2l run experiments/smoke.yaml --workers 1 --out outputs/x\nms2l bogus\n"
    [problem] = _problems(tmp_path, "run.sh", sh)
    assert problem.field == "line 4" and "unknown subcommand `ms2l bogus`" in problem.message
    [problem] = _problems(tmp_path, "doc2.md", "```bash\nray up cluster/no-such-cluster.yaml\n```\n")
    assert "cluster/no-such-cluster.yaml" in problem.message


@pytest.mark.parametrize(("name", "text", "field"), [
    ("env.yaml", _with_env_var("MLFLOW_TRACKING_PASSWORD: hunter2"),
     "env_vars.MLFLOW_TRACKING_PASSWORD"),
    ("job.yaml", GOOD_RAYJOB.replace("{name: head, image: rayproject/ray:2.60.0}",
                                     "{name: head, image: i, env: [{name: MLFLOW_TRACKING_PASSWORD, value: hunter2}]}"),
     "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].env[0][MLFLOW_TRACKING_PASSWORD].value"),
    ("doc.md", "Set it:\n\n```bash\nexport MLFLOW_TRACKING_PASSWORD=hunter2\n```\n", "line 4"),
    ("run.sh", "mlflow server --backend-store-uri postgresql://mlflow:hunter2@db/mlflow\n", "line 1"),
    ("run2.sh", "ray job submit --address http://h:8265 -- ms2l run x.yaml --token hunter2\n", "line 1"),
    ("keys.md", "aws configure set aws_access_key_id AKIAABCDEFGHIJKLMNOP\n", "line 1"),
    ("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n", "data"),
    ("l.yaml", GOOD_LAUNCHER + "auth: {ssh_user: ubuntu, ssh_private_key: '-----BEGIN RSA PRIVATE KEY-----'}\n",
     "auth.ssh_private_key"),
])
def test_literal_secret_is_rejected(tmp_path: Path, name: str, text: str, field: str) -> None:
    problems = _problems(tmp_path, name, text)
    assert field in _fields(problems), problems
    assert all(p.file.endswith(name) for p in problems)


def test_references_are_not_secrets(tmp_path: Path) -> None:
    text = _with_env_var('MLFLOW_TRACKING_PASSWORD: "${MLFLOW_TRACKING_PASSWORD}"')
    assert _problems(tmp_path, "env.yaml", text) == []
    sh = ('export MLFLOW_TRACKING_PASSWORD="$(aws ssm get-parameter --name p --query v)"\n'
          'kubectl create secret generic s --from-literal=password="$MLFLOW_TRACKING_PASSWORD"\n'
          "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=~/.ray/token\n"
          "mlflow server --backend-store-uri postgresql://mlflow@db/mlflow --host 127.0.0.1\n")
    assert _problems(tmp_path, "ok.sh", sh) == []
    assert all(map(is_secret_key, ["PGPASSWORD", "RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "apiKey", "db.password"]))
    assert not any(map(is_secret_key, ["RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "secretKeyRef", "auth", "ssh_user"]))
    assert all(map(is_reference, ["${A}", "$A", "${A:-x}", "$(cmd --x)", "", None, "~/.ray/token"]))
    assert not any(map(is_reference, ["hunter2", "${A}x", "token"]))


def test_unsafe_defaults_are_rejected(tmp_path: Path) -> None:
    no_auth = GOOD_LAUNCHER.replace("  - RAY_AUTH_MODE=token ray start --address", "  - ray start --address")
    assert _fields(_problems(tmp_path, "a.yaml", no_auth)) == ["worker_start_ray_commands[0]"]
    public = GOOD_LAUNCHER.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
    [problem] = _problems(tmp_path, "b.yaml", public)
    assert problem.field == "head_start_ray_commands[0]" and "0.0.0.0" in problem.message
    exposed = GOOD_RAYJOB.replace("    headGroupSpec:\n", "    headGroupSpec:\n      serviceType: LoadBalancer\n")
    assert "spec.rayClusterSpec.headGroupSpec.serviceType" in _fields(_problems(tmp_path, "c.yaml", exposed))
    no_token = GOOD_RAYJOB.replace("    authOptions: {mode: token}\n", "")
    assert len(_problems(tmp_path, "d.yaml", no_token)) == 2  # head and worker containers


def test_launcher_is_checked_against_rays_schema_and_yaml_must_parse(tmp_path: Path) -> None:
    typo = GOOD_LAUNCHER + "idle_timeout_minute: 5\n"
    [problem] = _problems(tmp_path, "l.yaml", typo)
    assert "idle_timeout_minute" in problem.message and "schema" in problem.message
    [problem] = _problems(tmp_path, "m.yaml", "a: [1, 2\n")
    assert problem.field == "<yaml>"
    [problem] = _problems(tmp_path, "n.yaml", "just: a mapping\n")
    assert "not a launcher config" in problem.message


def test_check_dir_reports_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(GOOD_LAUNCHER.replace("head_node_type: head\n", ""))
    (tmp_path / "b.md").write_text("```bash\nms2l nope\n```\n")
    with pytest.raises(ClusterConfigError) as err:
        check_dir(tmp_path, REPO)
    assert {p.file.rsplit("/", 1)[-1] for p in err.value.problems} == {"a.yaml", "b.md"}
    assert main([str(tmp_path)]) == 1
    assert "b.md: line 2: unknown subcommand" in capsys.readouterr().out


# --- no secrets logged as MLflow params ------------------------------------------------------------------

def test_credentials_are_masked_in_mlflow_params(tmp_path: Path, sqlite_uri: str) -> None:
    from ms2l_ray.config import flatten
    from ms2l_ray.tracking.runs import start_run

    run = start_run(sqlite_uri, "secrets", "masked")
    params = flatten({"env": {"MLFLOW_TRACKING_PASSWORD": "hunter2", "AWS_SECRET_ACCESS_KEY": "hunter3",
                              "MLFLOW_TRACKING_URI": "http://mlflow:5000", "RAY_AUTH_TOKEN": "hunter4"},
                      "storage": {"api_key": "hunter5", "path": "s3://bucket/x"}, "seed": 3})
    run.log_params(params)
    run.end()
    logged = client(sqlite_uri).get_run(run.run_id).data.params
    assert logged["env.MLFLOW_TRACKING_PASSWORD"] == "***"
    assert logged["env.AWS_SECRET_ACCESS_KEY"] == "***"
    assert logged["env.RAY_AUTH_TOKEN"] == "***"
    assert logged["storage.api_key"] == "***"
    assert logged["env.MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert logged["storage.path"] == "s3://bucket/x" and logged["seed"] == "3"
    assert not any(v.startswith("hunter") for v in logged.values())
