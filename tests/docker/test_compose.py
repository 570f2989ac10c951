"""Static checks of the production compose setup in ``docker/``.

No Docker engine runs where the tests run, so ``docker compose config`` / ``up`` cannot keep the
files honest. These tests do instead: they read the compose file the way compose does
(YAML, then ``${VAR:-default}`` interpolation with an empty environment), read the Dockerfile,
and check them against the code: the topic names of ``streams.settings.Topics``, the settings
``Settings.from_env`` accepts, the Kafka listeners the worker must reach. The topic-creating
script is executed with ``/bin/sh`` against a stub ``kafka-topics.sh`` that records its calls.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.errors import ConfigError
from streams.settings import Settings, Topics

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"

# ---------------------------------------------------------------------------------------------
# Reading the compose file as compose does
# ---------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """Compose variable interpolation: ``$$`` -> ``$``; ``${VAR}``, ``${VAR:-default}``, ...

    The compose file must work with no ``.env`` file, so a variable with no default (or with
    ``:?``) and no value in ``env`` is an error here rather than compose's silent empty string.
    """
    env = env or {}

    def replace(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            name, op, arg = m.group(3), None, ""
        else:
            braced = _BRACED.match(m.group(2))
            if braced is None:
                raise ValueError(f"cannot parse variable {m.group(0)!r}")
            name, op, arg = braced.group(1), braced.group(2), braced.group(3) or ""
        value = env.get(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return arg
            return value
        if op in (":+", "+"):
            return arg if value not in (None, "") else ""
        if value is None:
            raise ValueError(
                f"{m.group(0)} has no default; the compose file must run without a .env file"
            )
        return value

    return _VAR.sub(replace, text)


def _interpolate_tree(node: Any) -> Any:
    if isinstance(node, str):
        return interpolate(node)
    if isinstance(node, list):
        return [_interpolate_tree(v) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v) for k, v in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "the compose file is not a YAML mapping"
    return doc


def compose() -> dict[str, Any]:
    return _interpolate_tree(raw_compose())


def services() -> dict[str, dict[str, Any]]:
    svcs = compose().get("services")
    assert isinstance(svcs, dict) and svcs, "the compose file has no services"
    return svcs


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as compose passes it: list or mapping form, plus env_file."""
    env: dict[str, str] = {}
    env_files = service.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
        path = entry["path"] if isinstance(entry, dict) else entry
        for line in (DOCKER_DIR / path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip().strip("'\"")
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        for item in raw:
            key, sep, value = str(item).partition("=")
            if sep:  # a bare "KEY" passes the host's value through: unset here
                env[key] = value
        return env
    assert isinstance(raw, dict), f"environment must be a list or a mapping, not {raw!r}"
    for key, value in raw.items():
        # Compose rejects unquoted YAML booleans ("contains true, which is an invalid type").
        assert not isinstance(value, bool), f"{key}: quote it ('{str(value).lower()}')"
        if value is not None:
            env[str(key)] = str(value)
    return env


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        name, sep, address = item.strip().partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def kafka_env() -> dict[str, str]:
    return environment(services()["kafka"])


def network_names() -> set[str]:
    """Names a container on the compose network can resolve: service names and hostnames."""
    names: set[str] = set()
    for name, svc in services().items():
        names.add(name)
        if svc.get("hostname"):
            names.add(svc["hostname"])
        networks = svc.get("networks")
        if isinstance(networks, dict):
            for net in networks.values():
                names.update((net or {}).get("aliases") or [])
    return names


def internal_kafka_addresses() -> set[str]:
    """Advertised ``host:port`` of the kafka service that other containers can reach."""
    advertised = _listeners(kafka_env()["KAFKA_ADVERTISED_LISTENERS"])
    reachable = network_names()
    return {f"{host}:{port}" for host, port in advertised.values() if host in reachable}


# ---------------------------------------------------------------------------------------------
# Reading the Dockerfile
# ---------------------------------------------------------------------------------------------


def worker_build() -> tuple[Path, Path]:
    """(build context, Dockerfile) of the worker service, resolved like compose does."""
    build = services()["worker"].get("build")
    assert build, "the worker service must be built from the Dockerfile"
    if isinstance(build, str):
        build = {"context": build}
    context = (DOCKER_DIR / build.get("context", ".")).resolve()
    dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
    return context, dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with line continuations joined and comments dropped."""
    _, path = worker_build()
    assert path.is_file(), f"the worker's Dockerfile {path} does not exist"
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _args_list(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(args)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction != "ENV":
            continue
        parts = shlex.split(args)
        if parts and "=" not in parts[0]:  # legacy form: ENV KEY value with spaces
            env[parts[0]] = " ".join(parts[1:])
            continue
        for part in parts:
            key, _, value = part.partition("=")
            env[key] = value
    return env


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """[(sources, destination)] of every COPY/ADD from the build context."""
    out = []
    for instruction, args in dockerfile_instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        parts = _args_list(args)
        options = [p for p in parts if p.startswith("--")]
        if any(o.startswith("--from") for o in options):
            continue
        paths = [p for p in parts if not p.startswith("--")]
        assert len(paths) >= 2, f"{instruction} {args}: needs a source and a destination"
        out.append((paths[:-1], paths[-1]))
    return out


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def known_settings() -> set[str]:
    """Every RADAR_* variable name the settings object knows, from its own listing."""
    return {line.split("=", 1)[0] for line in Settings().describe().splitlines()}


def container_env(service: Mapping[str, Any]) -> dict[str, str]:
    """What the worker process sees: the image's ENV, overridden by the compose environment."""
    return {**dockerfile_env(), **environment(service)}


def worker_settings(service: Mapping[str, Any] | None = None) -> Settings:
    return Settings.from_env(container_env(service or services()["worker"]))


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def test_compose_file_parses_and_has_the_services() -> None:
    svcs = services()
    for name in ("kafka", "topics", "worker"):
        assert name in svcs, f"the compose file has no {name!r} service"
        assert isinstance(svcs[name], dict)
    assert "version" not in raw_compose(), "the top-level 'version' key is obsolete; drop it"


def test_no_zookeeper_anywhere() -> None:
    for name, svc in services().items():
        text = json.dumps(svc).lower()
        assert "zookeeper" not in name.lower(), f"service {name!r}: KRaft needs no ZooKeeper"
        assert "zookeeper" not in text, f"service {name!r} still refers to ZooKeeper"


def test_kafka_is_a_single_kraft_node() -> None:
    kafka = services()["kafka"]
    assert str(kafka.get("image", "")).startswith("apache/kafka:"), kafka.get("image")
    env = kafka_env()
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}, roles
    node_id = int(env["KAFKA_NODE_ID"])

    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(item.strip().split(":", 1) for item in protocol_map.split(","))
    controllers = [c.strip() for c in env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")]
    for name in listeners:
        assert name in protocols, f"listener {name} has no security protocol"
    for name in controllers:
        assert name in listeners, f"controller listener {name} is not in KAFKA_LISTENERS"
        assert name not in advertised, f"controller listener {name} must not be advertised"
    for name, (_, port) in advertised.items():
        assert name in listeners, f"advertised listener {name} is not in KAFKA_LISTENERS"
        assert listeners[name][1] == port, f"{name}: advertised port {port} is not the bound one"

    voters = [v.strip() for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert len(voters) == 1, f"a single node has a single voter, not {voters}"
    voter_id, _, voter_address = voters[0].partition("@")
    voter_host, _, voter_port = voter_address.rpartition(":")
    assert int(voter_id) == node_id
    assert voter_host in network_names() | {"localhost"}, voter_host
    assert int(voter_port) == listeners[controllers[0]][1], "voter port is not the controller's"

    inter_broker = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    assert inter_broker in advertised, f"inter-broker listener {inter_broker} is not advertised"

    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topic auto-creation must be off"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert int(env.get("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")) <= 1


def test_kafka_listeners_serve_containers_and_the_host() -> None:
    env = kafka_env()
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert "kafka:9092" in internal_kafka_addresses(), "containers must reach kafka:9092"
    host_listeners = [port for host, port in advertised.values() if host == "localhost"]
    assert host_listeners == [29092], f"host listener should be localhost:29092: {advertised}"
    published = set()
    for entry in services()["kafka"].get("ports") or []:
        if isinstance(entry, dict):
            published.add((int(entry.get("published", 0)), int(entry["target"])))
        else:
            *_, host_port, container_port = str(entry).split(":")
            published.add((int(host_port), int(container_port)))
    assert (29092, 29092) in published, f"kafka must publish 29092 on the host: {published}"


def test_kafka_has_a_healthcheck() -> None:
    health = services()["kafka"].get("healthcheck") or {}
    test = health.get("test")
    assert test, "kafka needs a healthcheck: the topics service waits for service_healthy"
    text = " ".join(test) if isinstance(test, list) else test
    assert "kafka-broker-api-versions.sh" in text
    assert "--bootstrap-server localhost:9092" in text


def _run_topics_service(tmp_path: Path) -> list[list[str]]:
    """Run the topics service's command with a stub kafka-topics.sh; return each call's argv."""
    svc = services()["topics"]
    entrypoint = svc.get("entrypoint") or []
    command = svc.get("command") or []
    argv = (shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)) + (
        shlex.split(command) if isinstance(command, str) else list(command)
    )
    assert argv, "the topics service has no command"
    shell = shutil.which(Path(argv[0]).name)
    assert Path(argv[0]).name in ("sh", "bash") and shell, f"not a shell command: {argv[:2]}"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    stub = bin_dir / "kafka-topics.sh"
    # One record per call: arguments separated by \037, the call ended by \036.
    stub.write_text(
        '#!/bin/sh\n{ for a in "$@"; do printf "%s\\037" "$a"; done; printf "\\036"; }'
        ' >> "$STUB_LOG"\n',
        encoding="utf-8",
    )
    stub.chmod(0o755)
    script_argv = [a.replace("/opt/kafka/bin/", f"{bin_dir}/") for a in argv[1:]]
    env = {
        **environment(svc),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "STUB_LOG": str(log),
    }
    done = subprocess.run(
        [shell, *script_argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"topics command failed: {done.stderr}"
    records = log.read_text(encoding="utf-8").split("\036") if log.exists() else []
    return [r.split("\037")[:-1] for r in records if r]


def _options(argv: list[str]) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg and arg.startswith("--"):
            key, _, value = arg.partition("=")
            out[key] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[arg] = argv[i + 1]
            i += 1
        else:
            out[arg] = True
        i += 1
    return out


def test_topics_service_creates_exactly_the_topics_of_the_settings(tmp_path: Path) -> None:
    settings = worker_settings()
    # Topics().all() with any RADAR_TOPIC_* rename the worker is given applied: the names the
    # worker will actually read and write.
    expected = set(settings.topics.all().values())
    if not any(k.startswith("RADAR_TOPIC_") for k in container_env(services()["worker"])):
        assert expected == set(Topics().all().values())

    creates = [_options(call) for call in _run_topics_service(tmp_path)]
    creates = [c for c in creates if c.get("--create")]
    created = [str(c.get("--topic")) for c in creates]
    assert len(created) == len(set(created)), f"a topic is created twice: {created}"
    missing = expected - set(created)
    extra = set(created) - expected
    assert not missing, f"the topics service does not create {sorted(missing)}"
    assert not extra, f"the topics service creates unknown topics {sorted(extra)}"

    internal = internal_kafka_addresses()
    for c in creates:
        topic = c["--topic"]
        assert c.get("--if-not-exists") is True, f"{topic}: needs --if-not-exists (re-runs)"
        assert c.get("--bootstrap-server") in internal, f"{topic}: bootstrap not in {internal}"
        assert c.get("--partitions") == str(settings.partitions), (
            f"{topic}: {c.get('--partitions')} partitions, workers expect {settings.partitions}"
        )
        assert c.get("--replication-factor") == str(settings.replication), topic
        configs = settings.topics.configs().get(str(topic), {})
        wanted = ",".join(f"{k}={v}" for k, v in configs.items()) or None
        assert c.get("--config") == wanted, f"{topic}: --config {c.get('--config')}, not {wanted}"


def test_topics_partitions_default_to_four() -> None:
    assert worker_settings().partitions == 4
    assert environment(services()["topics"]).get("PARTITIONS") == "4"


def test_topics_service_is_one_shot_after_a_healthy_kafka() -> None:
    svc = services()["topics"]
    assert svc.get("image") == services()["kafka"].get("image"), "use the kafka image's tools"
    depends = svc.get("depends_on")
    assert isinstance(depends, dict), "depends_on must use the long form with a condition"
    assert depends.get("kafka", {}).get("condition") == "service_healthy"
    restart = str(svc.get("restart", "no"))
    assert restart == "no" or restart.startswith("on-failure"), (
        f"restart: {restart} would re-run the one-shot topics service forever"
    )


def test_worker_environment_is_valid_settings() -> None:
    settings = worker_settings()
    internal = internal_kafka_addresses()
    assert settings.bootstrap_servers, "the worker has no broker"
    for address in settings.bootstrap_servers:
        assert address in internal, f"worker broker {address} is not one of kafka's {internal}"
    assert settings.broker_flavour == "kafka"
    assert settings.create_topics is False, "the topics service creates the topics"
    assert settings.web_enabled is True
    assert settings.web_port == 6066


def test_every_radar_variable_in_the_docker_files_is_a_known_setting() -> None:
    known = known_settings()
    _, dockerfile = worker_build()
    for path in (COMPOSE_FILE, dockerfile):
        names = set(re.findall(r"\bRADAR_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
        unknown = sorted(names - known)
        assert not unknown, f"{path.name}: unknown RADAR_ variable(s) {unknown}"


def test_a_misspelt_setting_would_fail_the_check() -> None:
    worker = dict(services()["worker"])
    env = environment(worker)
    env["RADAR_BROKR"] = env.pop("RADAR_BROKER")
    worker["environment"] = env
    with pytest.raises(ConfigError, match="RADAR_BROKR"):
        worker_settings(worker)
    assert "RADAR_BROKR" not in known_settings()
    listed = ["RADAR_BROKER=kafka://kafka:9092", "RADAR_BROKR=kafka://kafka:9092"]
    with pytest.raises(ConfigError, match="RADAR_BROKR"):
        worker_settings({"environment": listed})


def test_interpolation_resolves_defaults_and_rejects_missing_variables() -> None:
    assert interpolate("${RADAR_PARTITIONS:-4}") == "4"
    assert interpolate("${X-7}/$${literal}") == "7/${literal}"
    assert interpolate("${X:-4}", {"X": "8"}) == "8"
    with pytest.raises(ValueError):
        interpolate("${NO_DEFAULT}")
    with pytest.raises(ValueError):
        interpolate("${REQUIRED:?set it}")


def test_worker_depends_on_topics_completing() -> None:
    depends = services()["worker"].get("depends_on")
    assert isinstance(depends, dict), "depends_on must use the long form with a condition"
    assert depends.get("topics", {}).get("condition") == "service_completed_successfully"


def test_worker_scales() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker, "a fixed container_name prevents --scale worker=N"
    replicas = (worker.get("deploy") or {}).get("replicas", 1)
    assert int(replicas) >= 2, f"run at least two workers, not {replicas}"
    for entry in worker.get("ports") or []:
        if isinstance(entry, dict):
            assert "published" not in entry, f"fixed host port {entry} prevents scaling"
        else:
            assert ":" not in str(entry), f"fixed host port {entry!r} prevents scaling"
    assert worker.get("restart") in ("unless-stopped", "always")


def _copy_sources() -> set[str]:
    return {src.rstrip("/") for srcs, _ in dockerfile_copies() for src in srcs}


def test_worker_build_points_at_the_dockerfile() -> None:
    context, dockerfile = worker_build()
    assert context == REPO, f"build context should be the repository root, not {context}"
    assert dockerfile.is_file(), f"{dockerfile} does not exist"


def test_dockerfile_copies_what_pip_install_needs() -> None:
    # Everything `pip install /app` needs: pyproject.toml, its readme and its packages; plus
    # the schemas, which streams reads at run time.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", "schemas"}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    needed.update(pyproject["tool"]["setuptools"]["packages"])
    sources = _copy_sources()
    assert needed <= sources, f"the Dockerfile does not copy {sorted(needed - sources)}"


def test_dockerfile_copy_sources_exist_in_the_repo() -> None:
    context, _ = worker_build()
    sources = _copy_sources()
    assert sources, "the Dockerfile copies nothing"
    for src in sorted(sources):
        if any(c in src for c in "*?["):
            assert list(context.glob(src)), f"COPY source {src} matches nothing in the repo"
        else:
            assert (context / src).exists(), f"COPY source {src} is not in the repo"


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    instructions = dockerfile_instructions()
    base = [args for ins, args in instructions if ins == "FROM"][-1].split()[0]
    match = re.fullmatch(r"python:3\.(\d+)-slim", base)
    assert match and int(match.group(1)) >= 11, f"base image {base}: want python:3.11+-slim"

    users = [args for ins, args in instructions if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"

    entrypoints = [args for ins, args in instructions if ins == "ENTRYPOINT"]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    assert _args_list(entrypoints[-1]) == ["python", "-m", "streams"]
    assert entrypoints[-1].startswith("["), "exec form, so SIGTERM reaches the worker"
    cmds = [args for ins, args in instructions if ins == "CMD"]
    assert cmds and _args_list(cmds[-1])[0] == "worker", "the default command is the worker"
    command = services()["worker"].get("command")
    if command is not None:
        args = shlex.split(command) if isinstance(command, str) else command
        assert args[0] == "worker", f"the worker service runs {args!r}"


def test_dockerfile_installs_the_schemas_where_streams_looks() -> None:
    text = "\n".join(f"{ins} {args}" for ins, args in dockerfile_instructions())
    # python:*-slim has sys.prefix /usr/local; streams falls back to sys.prefix/share/...
    assert "/usr/local/share/outage-radar/schemas" in text
    assert re.search(r"pip install[^\n]*/app(\s|$)", text), "pip install /app (no extras)"
    workdirs = [args for ins, args in dockerfile_instructions() if ins == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app"
    data_dir = container_env(services()["worker"]).get("RADAR_DATA_DIR", Settings().data_dir)
    assert data_dir.startswith("/"), "Faust state must go to a directory the user can write"
