#!/usr/bin/env python3
"""Checks the Kubernetes deployments under deploy/kubernetes, offline.

Run by scripts/validate-k8s.sh, which provides what this needs: the
kubernetes-validate package (with PyYAML) in a virtualenv, and kubectl for
`kubectl kustomize`. For every directory given (one with a
kustomization.yaml):

1. Schema: each manifest the kustomization lists, and each object of the
   kustomize output, against the bundled OpenAPI schemas of every
   Kubernetes version asked for, strictly: an unknown field, a wrong type,
   or an apiVersion/kind with no schema is an error.
2. The gateway config: every ConfigMap that a gateway container reads as
   its --config must be TOML (tomllib) with keys that docs/configuration.md
   lists, and durations and
   counts must be written as the gateway reads them.
3. What ties the objects together, which no schema sees:
   - the gateway's liveness probe is GET /healthz and its readiness probe
     GET /readyz, both on the port of `admin-listen`;
   - stopping: terminationGracePeriodSeconds >= the gateway's preStop
     sleep + grace-period + MARGIN_S; php-fpm beside it sleeps until the
     gateway is done (single pod); php-fpm behind a headless Service sleeps
     until every gateway has re-resolved (resolve-interval + DNS_TTL_S);
     php-fpm's own stop (process_control_timeout + 1 s) fits too;
   - the upstream: a unix socket in an emptyDir that php-fpm's pool listens
     on in the same pod, or tcp:NAME.NAMESPACE.svc... naming a headless
     Service of this deployment whose pods listen on that port, and a
     NetworkPolicy that lets only the gateway pods reach it;
   - the gateway's fpm-ping-path and fpm-status-path are php-fpm's
     ping.path and pm.status_path;
   - every container requests CPU and memory, runs as non-root without
     privilege escalation; a read-only root has a /tmp mount (the gateway
     spools request bodies there); HorizontalPodAutoscalers point at a
     Deployment of the same deployment that leaves `replicas` to them.

Exit status 0 when everything holds, 1 otherwise; each problem is printed
as one line naming the directory and the object.
"""

import argparse
import posixpath
import re
import subprocess
import sys
import tomllib

import kubernetes_validate
import yaml

# Seconds a record of the headless Service may be cached: CoreDNS as kubeadm
# and kind configure it says `ttl 30` for the cluster zone.
DNS_TTL_S = 30
# The least time terminationGracePeriodSeconds must leave after the last
# container is expected to have exited.
MARGIN_S = 2
# Defaults the checks need when a key is left out (docs/configuration.md).
GATEWAY_DEFAULTS = {"grace-period": "10s", "resolve-interval": "5s"}
# Keys that may be 0 although they are counts.
ZERO_OK = {"max-idle-conns", "queue-length", "max-fails"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Problems:
    def __init__(self):
        self.lines = []

    def add(self, where, message):
        self.lines.append(f"{where}: {message}")


# --- reading ----------------------------------------------------------------


def yaml_docs(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def name_of(obj):
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def parse_duration(value):
    """Seconds of a gateway duration ("500ms", "10s", "1.5m"), else None."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_fpm_seconds(value):
    """Seconds of a php-fpm time value ("10", "10s", "2m", "1h", "1d")."""
    m = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_fpm_conf(text):
    """php-fpm's INI dialect: {section: {key: value}}; later values win."""
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = sections.setdefault(m.group(1).strip(), {})
            continue
        if "=" in line and current is not None:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip().strip('"')
    return sections


def gateway_keys(config_doc):
    """{key: kind} from the flag table of docs/configuration.md."""
    kinds = {"DUR": "duration", "N": "count", "BYTES": "size"}
    keys = {}
    with open(config_doc, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\| `--([a-z-]+)(?: ([^`]+))?` / `([a-z-]+)` \|", line)
            if m:
                keys[m.group(3)] = kinds.get(m.group(2), "any")
                continue
            m = re.match(r"\| `\[([a-z-]+)\]`", line)
            if m:
                keys[m.group(1)] = "table"
    if len(keys) < 20:
        raise SystemExit(f"check-k8s: found only {len(keys)} keys in {config_doc}; has its table changed?")
    return keys


# --- schema -------------------------------------------------------------------


def check_schema(problems, where, obj, versions):
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            problems.add(where, f"{name_of(obj)} is not valid Kubernetes {e.version} (strict): {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.add(where, f"{name_of(obj)}: {e.message}")


# --- the gateway config ---------------------------------------------------------


def check_gateway_config(problems, where, text, known):
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.add(where, f"not valid TOML: {e}")
        return None
    for key, value in config.items():
        kind = known.get(key)
        if kind is None:
            problems.add(where, f"unknown key `{key}` (docs/configuration.md lists the keys)")
        elif kind == "duration" and parse_duration(value) is None:
            problems.add(where, f"`{key}` = {value!r} is not a duration such as \"5s\" or \"500ms\"")
        elif kind == "count" and (
            not isinstance(value, int) or isinstance(value, bool) or value < (0 if key in ZERO_OK else 1)
        ):
            problems.add(where, f"`{key}` = {value!r} is not a whole number of at least {0 if key in ZERO_OK else 1}")
        elif kind == "size" and not (
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and re.fullmatch(r"\d+\s*(?:[kKmMgG](?:i?[bB])?)?", value))
        ):
            problems.add(where, f"`{key}` = {value!r} is not a size such as 1048576 or \"16M\"")
        elif kind == "table" and not isinstance(value, dict):
            problems.add(where, f"`{key}` must be a table")
    for key in ("listen", "upstream", "root", "admin-listen"):
        if key not in config:
            problems.add(where, f"`{key}` is missing (needed in Kubernetes: docs/kubernetes.md)")
    return config


def admin_port(config):
    value = config.get("admin-listen")
    m = re.fullmatch(r"(?:tcp:)?(?:\[[^\]]*\]|[^:\[\]]*):(\d+)", value) if isinstance(value, str) else None
    return int(m.group(1)) if m else None


def setting_seconds(config, key):
    return parse_duration(config.get(key, GATEWAY_DEFAULTS.get(key)))


# --- pods -------------------------------------------------------------------------


class Pod:
    """A pod template (or Pod) of the rendered output."""

    def __init__(self, owner, spec, labels, namespace):
        self.owner = owner
        self.spec = spec
        self.labels = labels or {}
        self.namespace = namespace
        self.grace = spec.get("terminationGracePeriodSeconds", 30)
        self.volumes = {v["name"]: v for v in spec.get("volumes", [])}

    def containers(self):
        return self.spec.get("containers", [])


def pods_of(objects):
    pods = []
    for obj in objects:
        ns = obj.get("metadata", {}).get("namespace")
        if obj.get("kind") in POD_TEMPLATE_KINDS:
            template = obj.get("spec", {}).get("template", {})
            pods.append(Pod(obj, template.get("spec", {}), template.get("metadata", {}).get("labels"), ns))
        elif obj.get("kind") == "Pod":
            pods.append(Pod(obj, obj.get("spec", {}), obj.get("metadata", {}).get("labels"), ns))
    return pods


def is_gateway(container):
    command = container.get("command") or []
    return bool(command) and posixpath.basename(command[0]) == "fcgi-gateway"


def flag_value(container, flag):
    words = (container.get("command") or []) + (container.get("args") or [])
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word[len(flag) + 1 :]
    return None


def mounted_file(pod, container, path, configmaps):
    """The text of the ConfigMap key mounted at `path` in the container."""
    for mount in container.get("volumeMounts", []):
        if mount.get("subPath"):
            if mount["mountPath"] != path:
                continue
            key = mount["subPath"]
        elif posixpath.dirname(path) == mount["mountPath"].rstrip("/"):
            key = posixpath.basename(path)
        else:
            continue
        volume = pod.volumes.get(mount["name"], {})
        cm_name = volume.get("configMap", {}).get("name")
        for item in volume.get("configMap", {}).get("items", []):
            if item.get("path") == key:
                key = item["key"]
        cm = configmaps.get((pod.namespace, cm_name))
        if cm is not None:
            return cm.get("data", {}).get(key)
    return None


def fpm_confs(pod, container, configmaps):
    """php-fpm config files from ConfigMaps mounted into the container."""
    confs = []
    for mount in container.get("volumeMounts", []):
        cm_name = pod.volumes.get(mount["name"], {}).get("configMap", {}).get("name")
        cm = configmaps.get((pod.namespace, cm_name))
        if cm is None:
            continue
        for key, text in cm.get("data", {}).items():
            if key.endswith(".conf") and (not mount.get("subPath") or mount["subPath"] == key):
                confs.append(parse_fpm_conf(text))
    return confs


def fpm_setting(confs, section, key):
    value = None
    for conf in confs:
        value = conf.get(section, {}).get(key, value)
    return value


def fpm_pool_setting(confs, key):
    value = None
    for conf in confs:
        for section, settings in conf.items():
            if section != "global" and key in settings:
                value = settings[key]
    return value


def prestop_sleep(container):
    """Seconds of a `sleep N` preStop hook (exec or the sleep action)."""
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return hook["sleep"].get("seconds")
    command = hook.get("exec", {}).get("command") or []
    if len(command) == 2 and posixpath.basename(command[0]) == "sleep":
        try:
            return float(command[1])
        except ValueError:
            return None
    if len(command) == 3 and command[1] == "-c":
        m = re.fullmatch(r"\s*(?:exec\s+)?sleep\s+(\d+(?:\.\d+)?)\s*", command[2])
        if m:
            return float(m.group(1))
    return None


def probe_port(container, probe):
    port = probe.get("httpGet", {}).get("port", probe.get("tcpSocket", {}).get("port"))
    if isinstance(port, str):
        for p in container.get("ports", []):
            if p.get("name") == port:
                return p.get("containerPort")
        return None
    return port


def selects(selector, labels, empty_selects_all=False):
    if not selector:
        return empty_selects_all
    return all(labels.get(k) == v for k, v in selector.items())


def mount_at(container, path):
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") == path.rstrip("/"):
            return mount
    return None


def check_container_basics(problems, where, pod, container):
    what = f"{name_of(pod.owner)} container {container['name']}"
    requests = container.get("resources", {}).get("requests", {})
    for resource in ("cpu", "memory"):
        if resource not in requests:
            problems.add(where, f"{what} requests no {resource} (the HorizontalPodAutoscaler and the scheduler need it)")
    security = container.get("securityContext", {})
    if not (security.get("runAsNonRoot") or pod.spec.get("securityContext", {}).get("runAsNonRoot")):
        problems.add(where, f"{what} is not held to runAsNonRoot")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.add(where, f"{what} does not set allowPrivilegeEscalation: false")
    if security.get("readOnlyRootFilesystem") and not mount_at(container, "/tmp"):
        problems.add(where, f"{what} has a read-only root filesystem and nothing mounted at /tmp")


def check_gateway(problems, where, pod, container, ctx):
    what = f"{name_of(pod.owner)} container {container['name']}"
    config_path = flag_value(container, "--config")
    if config_path is None:
        problems.add(where, f"{what} runs fcgi-gateway without --config")
        return
    text = mounted_file(pod, container, config_path, ctx["configmaps"])
    if text is None:
        problems.add(where, f"{what}: {config_path} is not a key of a ConfigMap mounted into it")
        return
    config = check_gateway_config(problems, f"{where} {config_path} of {what}", text, ctx["keys"])
    if config is None:
        return
    ctx["gateways"] += 1

    # Probes on the admin listener.
    port = admin_port(config)
    if port is None:
        problems.add(where, f"{what}: admin-listen {config.get('admin-listen')!r} is not host:port")
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container.get(kind)
        if not probe:
            problems.add(where, f"{what} has no {kind} (GET {path} on the admin port)")
            continue
        got = probe.get("httpGet", {}).get("path")
        if got != path:
            problems.add(where, f"{what}: {kind} asks {got!r}, not {path}")
        got_port = probe_port(container, probe)
        if port is not None and got_port != port:
            problems.add(where, f"{what}: {kind} goes to port {got_port}, not the admin port {port} (admin-listen)")

    # Stopping.
    sleep = prestop_sleep(container)
    grace = setting_seconds(config, "grace-period")
    if sleep is None:
        problems.add(where, f"{what} has no preStop sleep: it would get SIGTERM while still in the Service")
        sleep = 0
    if grace is not None and sleep + grace + MARGIN_S > pod.grace:
        problems.add(
            where,
            f"{name_of(pod.owner)}: terminationGracePeriodSeconds {pod.grace} < preStop sleep {sleep:g}"
            f" + grace-period {grace:g} + {MARGIN_S} s margin: the drain would be killed",
        )
    drained_by = sleep + (grace or 0)

    # The upstream.
    upstream = config.get("upstream", "")
    paths = [
        (what, key, config[key], fpm_key)
        for key, fpm_key in (("fpm-ping-path", "ping.path"), ("fpm-status-path", "pm.status_path"))
        if key in config
    ]
    if upstream.startswith("unix:"):
        check_unix_upstream(problems, where, pod, container, upstream[5:], drained_by, paths, ctx)
    elif upstream.startswith("tcp:"):
        check_tcp_upstream(problems, where, pod, config, upstream[4:], paths, ctx)
    else:
        problems.add(where, f"{what}: upstream {upstream!r} is neither unix:PATH nor tcp:HOST:PORT")


def check_fpm_container(problems, where, pod, container, ctx, listen, paths, min_sleep, why):
    """php-fpm that the gateway uses: its listen, paths and stopping time."""
    what = f"{name_of(pod.owner)} container {container['name']}"
    confs = fpm_confs(pod, container, ctx["configmaps"])
    if not confs:
        problems.add(where, f"{what}: no php-fpm .conf from a ConfigMap is mounted into it")
        return
    got = fpm_pool_setting(confs, "listen")
    if got != listen and not (listen.startswith("*:") and got in (listen[2:], "0.0.0.0:" + listen[2:], "[::]:" + listen[2:])):
        problems.add(where, f"{what}: php-fpm listens on {got!r}, the gateway connects to {listen!r}")
    for gateway, key, value, fpm_key in paths:
        if fpm_pool_setting(confs, fpm_key) != value:
            problems.add(where, f"{gateway}: {key} {value!r} is not {what}'s {fpm_key} ({fpm_pool_setting(confs, fpm_key)!r})")
    sleep = prestop_sleep(container)
    if sleep is None:
        problems.add(where, f"{what} has no preStop sleep ({why})")
        sleep = 0
    elif sleep < min_sleep:
        problems.add(where, f"{what}: preStop sleep {sleep:g} s < {min_sleep:g} s ({why})")
    pct = fpm_setting(confs, "global", "process_control_timeout")
    pct = parse_fpm_seconds(pct) if pct is not None else 0
    if pct is None:
        problems.add(where, f"{what}: process_control_timeout is not a php-fpm time value")
        pct = 0
    if sleep + pct + 1 + MARGIN_S > pod.grace:
        problems.add(
            where,
            f"{name_of(pod.owner)}: terminationGracePeriodSeconds {pod.grace} < php-fpm's preStop sleep {sleep:g}"
            f" + process_control_timeout {pct} + 1 (SIGTERM to SIGKILL) + {MARGIN_S} s margin",
        )
    ctx["fpm_checked"] += 1


def check_unix_upstream(problems, where, pod, gateway, socket, drained_by, paths, ctx):
    what = f"{name_of(pod.owner)} container {gateway['name']}"
    directory = posixpath.dirname(socket)
    mount = mount_at(gateway, directory)
    if mount is None:
        problems.add(where, f"{what}: nothing is mounted at {directory}, where the upstream socket is")
        return
    if "emptyDir" not in pod.volumes.get(mount["name"], {}):
        problems.add(where, f"{what}: the socket's volume {mount['name']} is not an emptyDir of the pod")
    others = [
        c
        for c in pod.containers()
        if c is not gateway and any(m["name"] == mount["name"] and m["mountPath"].rstrip("/") == directory for m in c.get("volumeMounts", []))
    ]
    if not others:
        problems.add(where, f"{what}: no other container mounts volume {mount['name']} at {directory}")
    for fpm in others:
        check_fpm_container(
            problems, where, pod, fpm, ctx, socket, paths, drained_by,
            f"php-fpm must outlive the gateway's preStop sleep + grace-period = {drained_by:g} s",
        )


def check_tcp_upstream(problems, where, pod, config, address, paths, ctx):
    what = f"{name_of(pod.owner)}"
    m = re.fullmatch(r"([a-z0-9-]+)(?:\.([a-z0-9-]+))?(?:\.svc(?:\.[a-z0-9.-]+)?)?:(\d+)", address)
    if not m:
        problems.add(where, f"{what}: upstream tcp:{address} does not name a Service (NAME.NAMESPACE.svc.cluster.local:PORT)")
        return
    name, namespace, port = m.group(1), m.group(2) or pod.namespace, int(m.group(3))
    service = ctx["services"].get((namespace, name))
    if service is None:
        problems.add(where, f"{what}: upstream names Service {name} in namespace {namespace}, which this deployment does not have")
        return
    spec = service.get("spec", {})
    if spec.get("clusterIP") != "None":
        problems.add(where, f"Service/{name} is not headless (clusterIP: None): the gateway would see one virtual address, not the pods")
    service_port = next((p for p in spec.get("ports", []) if p.get("port") == port), None)
    if service_port is None:
        problems.add(where, f"Service/{name} has no port {port}")
        return
    backends = [p for p in ctx["pods"] if p.namespace == namespace and selects(spec.get("selector"), p.labels)]
    if not backends:
        problems.add(where, f"Service/{name} selects no pod of this deployment")
    resolve = setting_seconds(config, "resolve-interval") or 0
    for backend in backends:
        target = service_port.get("targetPort", port)
        # A headless Service's DNS gives pod addresses: the gateway connects
        # to `port` on them, so that must be the port php-fpm listens on.
        for container in backend.containers():
            ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
            if target in ports.values() or target in ports:
                if (ports.get(target) if isinstance(target, str) else target) != port:
                    problems.add(where, f"Service/{name}: port {port} goes to {target}, but DNS of a headless Service gives pod addresses, reached on {port}")
                check_fpm_container(
                    problems, where, backend, container, ctx, f"*:{port}", paths, resolve + DNS_TTL_S,
                    f"gateways keep its address for up to resolve-interval {resolve:g} s + a {DNS_TTL_S} s DNS TTL",
                )
                check_network_policy(problems, where, backend, pod, port, ctx)


def check_network_policy(problems, where, backend, gateway_pod, port, ctx):
    policies = [
        p
        for p in ctx["policies"]
        if p["metadata"].get("namespace") == backend.namespace
        and selects(p["spec"].get("podSelector", {}).get("matchLabels"), backend.labels, empty_selects_all=True)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        problems.add(where, f"no NetworkPolicy limits who reaches {name_of(backend.owner)} on port {port}: anyone who speaks FastCGI to php-fpm runs code")
        return
    allowed = False
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            ports = [p.get("port") for p in rule.get("ports", [])]
            if not peers:
                problems.add(where, f"{name_of(policy)} lets every source in{' on ' + str(ports) if ports else ''}")
                continue
            for peer in peers:
                labels = peer.get("podSelector", {}).get("matchLabels")
                if set(peer) != {"podSelector"} or not selects(labels, gateway_pod.labels):
                    problems.add(where, f"{name_of(policy)} lets in a peer that is not the gateway pods: {peer}")
                elif not ports or port in ports:
                    allowed = True
    if not allowed:
        problems.add(where, f"no NetworkPolicy lets the gateway pods reach {name_of(backend.owner)} on port {port}")


def check_autoscalers(problems, where, objects):
    deployments = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o.get("kind") == "Deployment"}
    for hpa in (o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = deployments.get((hpa["metadata"].get("namespace"), ref["name"]))
        if ref.get("kind") != "Deployment" or target is None:
            problems.add(where, f"{name_of(hpa)} scales {ref.get('kind')}/{ref['name']}, which this deployment does not have")
            continue
        if "replicas" in target["spec"]:
            problems.add(where, f"{name_of(target)} sets replicas although {name_of(hpa)} owns the count: every apply would reset it")


def check_namespaces(problems, where, objects):
    namespaces = [o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"]
    for obj in objects:
        if obj.get("kind") == "Namespace":
            continue
        ns = obj["metadata"].get("namespace")
        if namespaces and ns not in namespaces:
            problems.add(where, f"{name_of(obj)} is in namespace {ns!r}, not in {namespaces}")


# --- one directory ----------------------------------------------------------------


def check_directory(problems, directory, versions, keys):
    where = directory.rstrip("/")
    with open(f"{directory}/kustomization.yaml", encoding="utf-8") as f:
        kustomization = yaml.safe_load(f)
    for resource in kustomization.get("resources", []):
        with open(f"{directory}/{resource}", encoding="utf-8") as f:
            for obj in yaml_docs(f.read()):
                check_schema(problems, f"{where}/{resource}", obj, versions)

    rendered = subprocess.run(["kubectl", "kustomize", directory], capture_output=True, text=True)
    if rendered.returncode != 0:
        problems.add(where, f"kubectl kustomize failed: {rendered.stderr.strip()}")
        return 0
    objects = yaml_docs(rendered.stdout)
    for obj in objects:
        check_schema(problems, f"{where} (kustomize output)", obj, versions)

    ctx = {
        "keys": keys,
        "configmaps": {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o.get("kind") == "ConfigMap"},
        "services": {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o.get("kind") == "Service"},
        "policies": [o for o in objects if o.get("kind") == "NetworkPolicy"],
        "pods": pods_of(objects),
        "gateways": 0,
        "fpm_checked": 0,
    }
    for pod in ctx["pods"]:
        for container in pod.containers():
            check_container_basics(problems, where, pod, container)
            if is_gateway(container):
                check_gateway(problems, where, pod, container, ctx)
    if ctx["gateways"] == 0:
        problems.add(where, "no gateway container (command: [fcgi-gateway]) whose config could be checked")
    elif ctx["fpm_checked"] == 0:
        problems.add(where, "no php-fpm container was found behind the gateway's upstream")
    check_autoscalers(problems, where, objects)
    check_namespaces(problems, where, objects)
    return len(objects)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True)
    parser.add_argument("--config-doc", default="docs/configuration.md")
    parser.add_argument("directories", nargs="+")
    args = parser.parse_args()

    keys = gateway_keys(args.config_doc)
    problems = Problems()
    for directory in args.directories:
        before = len(problems.lines)
        count = check_directory(problems, directory, args.kubernetes_version, keys)
        status = "ok" if len(problems.lines) == before else f"{len(problems.lines) - before} problem(s)"
        print(
            f"check-k8s: {directory}: {count} objects, schemas of Kubernetes {', '.join(args.kubernetes_version)}"
            f" (strict), gateway config, probes, stop timing, upstream: {status}"
        )
    for line in problems.lines:
        print(f"check-k8s: FAILED: {line}", file=sys.stderr)
    return 1 if problems.lines else 0


if __name__ == "__main__":
    sys.exit(main())
