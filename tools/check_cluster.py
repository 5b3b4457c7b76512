"""Validate the cluster recipes in ``cluster/``: well-formed, complete, runnable, safe, and free of secrets.

A recipe that names ``ms2l ablate --gpus-per-trail 1`` or a grid file that was renamed fails on the
cluster after minutes of provisioning; one with a password in it leaks on the first commit. So every
file in ``cluster/`` is checked here (and by a test):

* **kind** — a Ray cluster launcher config (``ray up``), a KubeRay ``RayCluster`` or ``RayJob``, a Ray
  runtime environment, Markdown docs or a shell script; each YAML kind has its required fields
  (the launcher config is also checked against Ray's own JSON schema).
* **commands** — every ``ms2l <command> ...`` line (entrypoints, setup commands, fenced code in docs,
  command-like comments) is parsed by the real CLI parser (:func:`ms2l_ray.cli.build_parser`): the
  subcommand, every flag and its value must exist, and the grid/search-space files it names must be in
  the repository; so must the ``cluster/``, ``ablations/`` … files any command line names.
* **safe defaults** — Ray token authentication on (``RAY_AUTH_MODE=token``), the dashboard on 127.0.0.1
  for the launcher, no public Kubernetes service for the head.
* **no secrets** — keys that look like credentials hold only ``${VAR}``/``$(command)`` references or a
  Kubernetes ``secretKeyRef``; no inline URI passwords, no literal ``Secret`` manifests, no known token
  formats.

Every problem names the file and the field (dotted YAML path or ``line N``); all are reported at once.
``python -m tools.check_cluster [DIR]`` prints them and exits 1 when there are any.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.redact import is_secret_key


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class ClusterConfigError(ValueError):
    """Raised by :func:`check_dir` with every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


# --- secrets -----------------------------------------------------------------------------------------

# Which keys hold credentials is decided in one place, ms2l_ray.redact (shared with MLflow param logging).
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-=?+][^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*")
TOKEN_FORMATS = {"an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
                 "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
                 "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
                 "a Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")}
ASSIGNMENT = re.compile(r"(?<![\w.-])([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&|)]+)")
SECRET_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(?:=|\s+)(\"[^\"]*\"|'[^']*'|[^\s;&|)]+)")
URI_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:([^\s@/'\"]+)@")


def is_reference(value: Any) -> bool:
    """Empty, ``${VAR}``/``$VAR`` references only, a ``$(command)``, or a file path (``/``, ``~/``, ``./``)."""
    if value is None:
        return True
    text = str(value).strip().strip("'\"")
    if text == "" or text.startswith(("$(", "/", "~/", "./")):
        return True
    return REFERENCE.sub("", text) == ""


def text_secrets(text: str) -> list[tuple[str, str]]:
    """(``line N``, message) for literal credentials in shell/Markdown/YAML text."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        pairs = [(m.group(1), m.group(2)) for m in ASSIGNMENT.finditer(line)]
        pairs += [(m.group(1).replace("-", "_"), m.group(2)) for m in SECRET_FLAG.finditer(line)]
        for key, value in pairs:
            if is_secret_key(key) and not is_reference(value):
                found.append((f"line {n}", f"{key} is given a literal value; read it from the environment "
                                           f"(${{{key.upper()}}}) or a secret store instead"))
        for m in URI_PASSWORD.finditer(line):
            if not is_reference(m.group(1)):
                found.append((f"line {n}", "a URI with an inline password; leave it out (PGPASSWORD, "
                                           "MLFLOW_TRACKING_PASSWORD) or use a ${VAR} reference"))
        found += [(f"line {n}", f"looks like {what}") for what, rx in TOKEN_FORMATS.items() if rx.search(line)]
    return found


def structure_secrets(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(dotted field, message) for credential-looking keys with literal values, Kubernetes env lists included."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and "value" in node and is_secret_key(node["name"]):
            if not is_reference(node["value"]):  # Kubernetes env entry {name, value}
                found.append((f"{path}[{node['name']}].value",
                              "a literal credential; use valueFrom.secretKeyRef (a Kubernetes Secret)"))
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                found += structure_secrets(value, sub)
            elif is_secret_key(str(key)) and not is_reference(value):
                found.append((sub, "a literal credential; use a ${VAR} reference to the environment"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += structure_secrets(item, f"{path}[{i}]")
    return found


# --- ms2l command lines --------------------------------------------------------------------------------

COMMAND_START = {"--", "&&", "||", ";", "|", "(", "exec", "nohup", "time", "then", "do", "!"}
COMMENTED_COMMAND = re.compile(r"\s*(ms2l|ray|kubectl|helm|python3?|pip|mlflow|aws|gcloud|bash|export)\s")
REPO_FILE = re.compile(r"^(?:\./)?((?:cluster|ablations|search_spaces|experiments)/[\w./-]+\.(?:ya?ml|sh|md))$")


def _logical_lines(code: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, each with its first line number."""
    out, buf, start = [], "", 0
    for n, line in enumerate(code.splitlines(), 1):
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split, lex.commenters = True, "#"
    try:
        return list(lex)
    except ValueError:  # unbalanced quotes: prose, not a command
        return line.split()


def ms2l_commands(code: str) -> list[tuple[int, list[str]]]:
    """``(line, argv after "ms2l")`` for each ``ms2l ...`` or ``python -m ms2l_ray.cli ...`` in shell code."""
    found = []
    for n, line in _logical_lines(code):
        toks = _tokens(line)
        for i, tok in enumerate(toks):
            prev = toks[i - 1] if i else ""
            at_start = (i == 0 or prev in COMMAND_START or re.fullmatch(r"[A-Za-z_]\w*=.*", prev) is not None
                        or (i >= 2 and toks[i - 2] == "timeout"))  # timeout 6h ms2l ...
            if (tok.rsplit("/", 1)[-1] == "ms2l" and at_start) or (tok == "ms2l_ray.cli" and prev == "-m"):
                rest = toks[i + 1:]
                end = next((j for j, t in enumerate(rest) if set(t) <= set(";&|()<>")), len(rest))
                found.append((n, rest[:end]))
    return found


def repo_files_named(code: str) -> list[tuple[int, str]]:
    """``(line, path)`` for ``cluster/…``, ``ablations/…`` files a command line names."""
    return [(n, m.group(1)) for n, line in _logical_lines(code) for tok in _tokens(line)
            if (m := REPO_FILE.match(tok.split("=", 1)[-1]))]


@functools.lru_cache(maxsize=1)
def _cli_parser() -> argparse.ArgumentParser:
    from ms2l_ray.cli.main import build_parser

    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the ms2l parser has no subcommands")


def check_ms2l_command(argv: list[str], repo_root: Path, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Problems with one ``ms2l`` invocation, checked against the real CLI parser."""
    commands = _subparsers(parser or _cli_parser())
    if not argv or argv[0] in ("-h", "--help"):
        return [] if argv else ["`ms2l` without a subcommand"]
    cmd, args = argv[0], argv[1:]
    if cmd not in commands:
        return [f"unknown subcommand `ms2l {cmd}`; known: {', '.join(sorted(commands))}"]
    sub = commands[cmd]
    known = sub._option_string_actions
    bad = [t.split("=", 1)[0] for t in args if t.startswith("-") and t.split("=", 1)[0] not in known
           and not re.fullmatch(r"-\d+(\.\d+)?", t)]
    if bad:
        flags = ", ".join(sorted(o for o in known if o.startswith("--")))
        return [f"`ms2l {cmd}` has no option {b}; known: {flags}" for b in bad]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            ns = sub.parse_args(args)
    except SystemExit as exc:
        return [] if exc.code == 0 else [f"`ms2l {cmd}`: {err.getvalue().strip().splitlines()[-1]}"]
    problems = []
    for action in sub._actions:  # input files: positionals and --config
        value = getattr(ns, action.dest, None)
        if (not action.option_strings or action.dest == "config") and isinstance(value, (str, Path)):
            text = str(value)
            if text.endswith((".yaml", ".yml")) and "://" not in text and "$" not in text:
                if not (repo_root / text).exists():
                    problems.append(f"`ms2l {cmd}` names {text}, which is not in the repository")
    return problems


# --- kinds ---------------------------------------------------------------------------------------------

REQUIRED_EXCLUDES = (".git", "mlruns", "mlflow.db", "ray_results", "outputs", ".venv*", "__pycache__")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _require(doc: Any, fields: list[str], prefix: str = "") -> list[tuple[str, str]]:
    return [(prefix + f, "required field is missing") for f in fields if _get(doc, f) in (None, "", [], {})]


def check_launcher(doc: dict[str, Any]) -> list[tuple[str, str]]:
    found = _require(doc, ["cluster_name", "provider", "provider.type", "available_node_types", "head_node_type",
                           "max_workers"])
    types = doc.get("available_node_types") or {}
    if doc.get("head_node_type") and isinstance(types, dict) and doc["head_node_type"] not in types:
        found.append(("head_node_type", f"{doc['head_node_type']!r} is not one of available_node_types "
                                        f"{sorted(types)}"))
    found += _ray_schema_problems(doc)
    for field in ("head_start_ray_commands", "worker_start_ray_commands"):
        for i, cmd in enumerate(doc.get(field) or []):
            if "ray start" not in str(cmd):
                continue
            if not re.search(r"RAY_AUTH_MODE=token\b", str(cmd)):
                found.append((f"{field}[{i}]", "`ray start` without RAY_AUTH_MODE=token: keep token authentication on"))
            host = re.search(r"--dashboard-host[= ]+(\S+)", str(cmd))
            if host and host.group(1).strip("'\"") not in LOOPBACK:
                found.append((f"{field}[{i}]", f"dashboard bound to {host.group(1)}; keep 127.0.0.1 and reach it "
                                               f"with `ray dashboard <config>` (an SSH tunnel)"))
    return found


def _ray_schema_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Ray's own launcher schema (``ray/autoscaler/ray-schema.json``): unknown keys, wrong types."""
    try:
        import json

        import jsonschema
        import ray.autoscaler
    except ImportError:  # pragma: no cover - ray[default] brings jsonschema
        return []
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    return [(".".join(map(str, e.absolute_path)) or "<top>", f"Ray's launcher schema: {e.message}")
            for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


def _ray_containers(spec: dict[str, Any], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})]
    groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    return [(f"{prefix}{name}.template.spec.containers[{j}]", c) for name, g in groups
            for j, c in enumerate(_get(g, "template.spec.containers") or [])]


def check_raycluster_spec(spec: Any, prefix: str) -> list[tuple[str, str]]:
    found = _require(spec, ["headGroupSpec", "headGroupSpec.template.spec.containers", "workerGroupSpecs"], prefix)
    for i, group in enumerate(spec.get("workerGroupSpecs") or [] if isinstance(spec, dict) else []):
        found += _require(group, ["groupName", "template.spec.containers"], f"{prefix}workerGroupSpecs[{i}].")
    if not isinstance(spec, dict):
        return found
    if _get(spec, "authOptions.mode") != "token":
        for field, container in _ray_containers(spec, prefix):
            env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
            if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
                found.append((f"{field}.env", "no RAY_AUTH_MODE=token (nor spec.authOptions.mode: token): keep "
                                              "token authentication on"))
            elif "RAY_AUTH_TOKEN" not in env and "RAY_AUTH_TOKEN_PATH" not in env:
                found.append((f"{field}.env", "RAY_AUTH_MODE=token but no RAY_AUTH_TOKEN from a secretKeyRef"))
    service = _get(spec, "headGroupSpec.serviceType")
    if service in ("LoadBalancer", "NodePort"):
        found.append((f"{prefix}headGroupSpec.serviceType", f"{service} exposes the dashboard and GCS outside the "
                                                            f"cluster; use ClusterIP and `kubectl port-forward`"))
    if spec.get("enableInTreeAutoscaling") is not True:
        found.append((f"{prefix}enableInTreeAutoscaling", "autoscaling is off; set it to true"))
    return found


def check_kuberay(doc: dict[str, Any]) -> list[tuple[str, str]]:
    found = _require(doc, ["apiVersion", "kind", "metadata.name", "spec"])
    if doc.get("apiVersion") != "ray.io/v1":
        found.append(("apiVersion", f"expected ray.io/v1, got {doc.get('apiVersion')!r}"))
    spec = doc.get("spec") or {}
    if doc.get("kind") == "RayCluster":
        return found + check_raycluster_spec(spec, "spec.")
    found += _require(doc, ["spec.entrypoint"])
    if "rayClusterSpec" in spec:
        found += check_raycluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec.")
    elif "clusterSelector" not in spec:
        found.append(("spec.rayClusterSpec", "required field is missing (or spec.clusterSelector)"))
    if isinstance(spec.get("runtimeEnvYAML"), str):
        try:
            env = yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            return found + [("spec.runtimeEnvYAML", f"not valid YAML: {exc}")]
        found += [(f"spec.runtimeEnvYAML.{f}", m) for f, m in check_runtime_env(env)]
    return found


def check_runtime_env(doc: Any) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        return [("<top>", "a runtime environment is a mapping")]
    found = _require(doc, ["working_dir", "env_vars"])
    if isinstance(doc.get("working_dir"), str) and "://" not in doc["working_dir"]:  # a local dir is uploaded
        excludes = doc.get("excludes")
        if not excludes:
            found.append(("excludes", f"required field is missing: a local working_dir is uploaded, so exclude "
                                      f"at least {list(REQUIRED_EXCLUDES)}"))
        else:
            found += [("excludes", f"does not exclude {p!r} (local runs, results and environments must not be "
                                   f"uploaded)") for p in REQUIRED_EXCLUDES if p not in excludes]
    for key, value in (doc.get("env_vars") or {}).items():
        if (key.startswith("MLFLOW_TRACKING_") or is_secret_key(key)) and not REFERENCE.fullmatch(str(value)):
            found.append((f"env_vars.{key}", f"must be a ${{VAR}} reference to the node's environment, "
                                             f"got {value!r}"))
    try:
        from ray.runtime_env import RuntimeEnv
    except ImportError:  # pragma: no cover - ray is a dependency
        return found
    found += [(k, f"not a Ray runtime_env field; known: {sorted(f for f in RuntimeEnv.known_fields if f[0] != '_')}")
              for k in doc if k not in RuntimeEnv.known_fields]
    try:
        RuntimeEnv(**{k: v for k, v in doc.items() if k in RuntimeEnv.known_fields})
    except (TypeError, ValueError) as exc:
        found.append(("<top>", f"Ray rejects it: {exc}"))
    return found


# --- files ---------------------------------------------------------------------------------------------

def _yaml_kind(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "unknown"
    if doc.get("kind") in ("RayCluster", "RayJob"):
        return "kuberay"
    if "apiVersion" in doc and "kind" in doc:
        return "kubernetes"
    if "provider" in doc or "available_node_types" in doc:
        return "launcher"
    if {"working_dir", "excludes", "env_vars", "pip", "py_modules"} & set(doc):
        return "runtime_env"
    return "unknown"


def _code_of(path: Path, text: str, docs: list[Any]) -> list[tuple[str, int, str]]:
    """``(field, first line, shell code)`` pieces: fenced Markdown blocks, a whole script, YAML strings
    (field = their dotted path) and command lines quoted in YAML comments."""
    if path.suffix == ".md":
        return [("", text[:m.start(1)].count("\n") + 1, m.group(1))
                for m in re.finditer(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, re.M | re.S)]
    if path.suffix == ".sh":
        return [("", 1, text)]
    pieces = [("", n, c) for n, line in enumerate(text.splitlines(), 1)
              if line.lstrip().startswith("#") and COMMENTED_COMMAND.match(c := line.split("#", 1)[1])]

    def strings(node: Any, at: str) -> list[tuple[str, int, str]]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in strings(v, f"{at}.{k}" if at else str(k))]
        if isinstance(node, list):
            return [s for i, v in enumerate(node) for s in strings(v, f"{at}[{i}]")]
        return [(at, 1, node)] if isinstance(node, str) and " " in node.strip() else []  # names are not commands

    many = len(docs) > 1
    return pieces + [s for i, d in enumerate(docs) for s in strings(d, f"[document {i}] " if many else "")]


def validate_file(path: str | Path, repo_root: str | Path | None = None) -> list[Problem]:
    """Every problem in one cluster file (an empty list when it is fine)."""
    path = Path(path)
    root = Path(repo_root) if repo_root else _repo_root(path)
    name = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return [Problem(name, "<file>", f"cannot read: {exc}")]
    docs: list[Any] = []
    found: list[tuple[str, str]] = []
    if path.suffix in (".yaml", ".yml"):
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            return [Problem(name, "<yaml>", f"not well-formed YAML: {exc}")]
        for i, doc in enumerate(docs):
            pre = f"[document {i}] " if len(docs) > 1 else ""
            kind = _yaml_kind(doc)
            checks = {"launcher": check_launcher, "runtime_env": check_runtime_env,
                      "kuberay": check_kuberay}
            if kind in checks:
                found += [(pre + f, m) for f, m in checks[kind](doc)]
            elif kind == "kubernetes" and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                found.append((pre + "data", "a Secret manifest with literal values; create it with `kubectl create "
                                            "secret ... --from-literal=KEY=\"$VAR\"` from the environment"))
            elif kind == "unknown":
                found.append((pre + "<top>", "not a launcher config, RayCluster, RayJob or runtime environment"))
            found += [(pre + f, m) for f, m in structure_secrets(doc)]
    elif path.suffix not in (".md", ".sh"):
        return [Problem(name, "<file>", "unexpected file type (expected .yaml, .md or .sh)")]
    found += text_secrets(text)
    for field, start, code in _code_of(path, text, docs):
        for n, argv in ms2l_commands(code):
            found += [(field or f"line {start + n - 1}", p) for p in check_ms2l_command(argv, root)]
        for n, f in repo_files_named(code):
            where = field or f"line {start + n - 1}"
            if not (root / f).exists() and not any(w == where and f" {f}," in m for w, m in found):
                found.append((where, f"names {f}, which is not in the repository"))
    return [Problem(name, f, m) for f, m in dict.fromkeys(found)]


def _repo_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


def validate_dir(directory: str | Path = "cluster", repo_root: str | Path | None = None) -> list[Problem]:
    """Every problem in every ``.yaml``/``.yml``/``.md``/``.sh`` file of ``directory``."""
    files = sorted(p for p in Path(directory).iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for f in files for p in validate_file(f, repo_root)]


def check_dir(directory: str | Path = "cluster", repo_root: str | Path | None = None) -> None:
    problems = validate_dir(directory, repo_root)
    if problems:
        raise ClusterConfigError(problems)


def main(argv: list[str] | None = None) -> int:
    directory = (argv if argv is not None else sys.argv[1:]) or ["cluster"]
    problems = [p for d in directory for p in (validate_dir(d) if Path(d).is_dir() else validate_file(d))]
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s) in {', '.join(directory)}" if problems else f"{', '.join(directory)}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
