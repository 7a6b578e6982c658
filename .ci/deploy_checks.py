#!/usr/bin/env python3
"""Structural checks of the deployment files (run by .ci/deploy-checks.sh).

Usage: deploy_checks.py [--compose-json FILE] [--kustomize-out FILE]

Checks the fields that matter and that no schema validator would catch:
names, ports, paths and labels that must agree across docker-compose.yml,
deploy/examples/compose.toml, deploy/Dockerfile, deploy/k8s/*,
deploy/redis-acl.conf. Prints one line per failed check and exits 1 if any
failed. Needs PyYAML; tomllib is in Python >= 3.11 (tomli is used if present
on older Pythons).
"""

import argparse
import json
import os
import re
import sys

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURES = []
CHECKED = [0]


def check(ok, what):
    CHECKED[0] += 1
    if not ok:
        FAILURES.append(what)
    return ok


def path(*parts):
    return os.path.join(ROOT, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def load_toml(*parts):
    with open(path(*parts), "rb") as f:
        return tomllib.load(f)


def interpolate(value):
    """`${NAME:-default}` as compose substitutes it with NAME unset."""
    if not isinstance(value, str):
        return value

    def sub(m):
        inner = m.group(1)
        check(":-" in inner, f"compose: ${{{inner}}} has no :-default")
        return inner.split(":-", 1)[1] if ":-" in inner else ""

    return re.sub(r"\$\{([^}]*)\}", sub, value)


def deep_interpolate(node):
    if isinstance(node, dict):
        return {k: deep_interpolate(v) for k, v in node.items()}
    if isinstance(node, list):
        return [deep_interpolate(v) for v in node]
    return interpolate(node)


def env_map(env):
    if env is None:
        return {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


def flag(args, name):
    if name in args and args.index(name) + 1 < len(args):
        return args[args.index(name) + 1]
    return None


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages():
    text = read("deploy", "Dockerfile")
    # Join continuation lines.
    text = re.sub(r"\\\n", " ", text)
    stages, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            current = {"from": m.group(1), "name": m.group(2), "ins": []}
            stages.append(current)
        elif current is not None:
            current["ins"].append((word, rest.strip()))
    return text, stages


def check_dockerfile():
    text, stages = dockerfile_stages()
    names = [s["name"] for s in stages]
    check("builder" in names, "Dockerfile: no `builder` stage")
    check("wechat-sim" in names, "Dockerfile: no `wechat-sim` target")
    check(names and names[-1] == "wxtoken", "Dockerfile: the last (default) stage must be `wxtoken`")
    builder = next((s for s in stages if s["name"] == "builder"), None)
    if builder:
        check(builder["from"].startswith("rust:"), "Dockerfile: builder is not a rust image")
        runs = " ".join(r for w, r in builder["ins"] if w == "RUN")
        check("--mount=type=cache" in runs and "cargo/registry" in runs and "target" in runs,
              "Dockerfile: builder lacks BuildKit cache mounts for the registry and target")
        check("--locked" in runs, "Dockerfile: cargo build without --locked")
    for name, binary, port in (("wxtoken", "wxtoken", "8088"), ("wechat-sim", "wechat-sim", "9000")):
        stage = next((s for s in stages if s["name"] == name), None)
        if not check(stage is not None, f"Dockerfile: stage {name} missing"):
            continue
        ins = stage["ins"]
        users = [r for w, r in ins if w == "USER"]
        check(users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]) is not None,
              f"Dockerfile {name}: USER must be a numeric non-root uid (runAsNonRoot verifies it)")
        check(("EXPOSE", port) in ins, f"Dockerfile {name}: EXPOSE {port}")
        entry = [r for w, r in ins if w == "ENTRYPOINT"]
        check(entry and json.loads(entry[-1]) == [binary], f"Dockerfile {name}: ENTRYPOINT [\"{binary}\"]")
        check(any(w == "COPY" and "--from=builder" in r and binary in r for w, r in ins),
              f"Dockerfile {name}: binary not copied from the builder")
    runtime = stages[-1]["ins"] if stages else []
    check(("CMD", '["serve"]') in runtime, "Dockerfile wxtoken: CMD [\"serve\"]")
    hc = [r for w, r in runtime if w == "HEALTHCHECK"]
    check(hc and re.search(r'CMD \["wxtoken", "healthcheck"\]', hc[-1]) is not None,
          "Dockerfile wxtoken: HEALTHCHECK must run `wxtoken healthcheck` (no curl in the image)")
    sim_stage = next((s for s in stages if s["name"] == "wechat-sim"), None)
    sim_hc = [r for w, r in (sim_stage["ins"] if sim_stage else []) if w == "HEALTHCHECK"]
    check(sim_hc and re.search(r'CMD \["wechat-sim", "--healthcheck"', sim_hc[-1]) is not None,
          "Dockerfile wechat-sim: HEALTHCHECK must run `wechat-sim --healthcheck` (no curl in the image)")
    check(("ENV", "WXTOKEN_CONFIG=/etc/wxtoken/wxtoken.toml") in runtime,
          "Dockerfile wxtoken: ENV WXTOKEN_CONFIG=/etc/wxtoken/wxtoken.toml")
    for w, r in (i for s in stages for i in s["ins"]):
        if w in ("ENV", "ARG"):
            check(not re.search(r"SECRET|PASSWORD|API_KEY|TOKEN=", r, re.I),
                  f"Dockerfile: {w} {r} looks like a baked-in secret")
    ignore = read(".dockerignore").split()
    for needed in ("target/", ".git/"):
        check(needed in ignore, f".dockerignore lacks {needed}")
    return set(n for n in names if n)


# ---------------------------------------------------------------- compose


def check_compose(stages, compose_json):
    raw = yaml.safe_load(read("docker-compose.yml"))
    services = deep_interpolate(raw["services"])
    conf = load_toml("deploy", "examples", "compose.toml")
    coordinators = sorted(n for n in services if n.startswith("coordinator-"))
    before = len(FAILURES)
    check(len(coordinators) == 3, f"compose: expected 3 coordinator services, got {coordinators}")
    for name in ("redis", "wechat-sim", "consumer"):
        check(name in services, f"compose: service {name} missing")
    if len(FAILURES) > before:
        return

    # Every bind-mounted file exists.
    for sname, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./"):
                check(os.path.exists(path(src[2:])), f"compose {sname}: mounted {src} does not exist")

    # redis
    redis = services["redis"]
    cmd = redis.get("command", [])
    check(str(redis.get("image", "")).startswith("redis:7"), "compose redis: image redis:7")
    check(flag(cmd, "--save") == "" and flag(cmd, "--appendonly") == "no",
          "compose redis: no persistence (--save \"\" --appendonly no)")
    check(flag(cmd, "--maxmemory-policy") == "noeviction", "compose redis: --maxmemory-policy noeviction")
    aclfile = flag(cmd, "--aclfile")
    check(aclfile and any(v == f"./deploy/redis-acl.conf:{aclfile}:ro" for v in redis.get("volumes", [])),
          "compose redis: --aclfile must be deploy/redis-acl.conf mounted read-only")
    hc = " ".join(redis.get("healthcheck", {}).get("test", []))
    m = re.search(r"--user (\S+) --pass (\S+)", hc)
    acl = {l.split()[1]: l.split() for l in read("deploy", "redis-acl.conf").splitlines() if l.startswith("user ")}
    check(m is not None and f">{m.group(2)}" in acl.get(m.group(1), []),
          "compose redis: the healthcheck must log in as a user of deploy/redis-acl.conf (default is off)")

    # wechat-sim
    sim = services["wechat-sim"]
    check(sim.get("build", {}).get("target") == "wechat-sim" and "wechat-sim" in stages,
          "compose wechat-sim: build target wechat-sim of deploy/Dockerfile")
    args = sim.get("command", [])
    listen = flag(args, "--listen") or ""
    app = flag(args, "--app") or ":"
    base = conf["upstream"]["base_url"]
    check(base == f"http://wechat-sim:{listen.rsplit(':', 1)[-1]}",
          f"compose.toml upstream {base} is not wechat-sim's --listen {listen}")
    check(app.split(":", 1)[0] == conf["apps"][0]["appid"],
          "compose: wechat-sim --app appid differs from compose.toml's appid")
    ttl = duration_s(flag(args, "--token-ttl"))
    check(ttl is not None and ttl <= 300, "compose wechat-sim: a short --token-ttl")
    check(flag(args, "--overlap") is not None, "compose wechat-sim: --overlap")
    sim_hc = sim.get("healthcheck", {}).get("test", [])
    check(sim_hc[:3] == ["CMD", "wechat-sim", "--healthcheck"]
          and (len(sim_hc) == 3 or sim_hc[3] == f"http://127.0.0.1:{listen.rsplit(':', 1)[-1]}/healthz"),
          "compose wechat-sim: healthcheck `wechat-sim --healthcheck http://127.0.0.1:PORT/healthz` on its --listen port (no curl in the image)")
    quota = flag(args, "--daily-quota")
    check(quota is not None and int(quota) >= conf["refresh"]["daily_budget"],
          "compose: wechat-sim --daily-quota must cover compose.toml's daily_budget")

    # coordinators
    ids, images = set(), set()
    api_keys = set()
    for name in coordinators:
        svc = services[name]
        env = env_map(svc.get("environment"))
        images.add(svc.get("image"))
        build = svc.get("build", {})
        check(build.get("dockerfile") == "deploy/Dockerfile" and build.get("target") == "wxtoken",
              f"compose {name}: build target wxtoken of deploy/Dockerfile")
        ids.add(env.get("WXTOKEN__REFRESH__REPLICA_ID"))
        check(env.get("WXTOKEN__HTTP__LISTEN") == "0.0.0.0:8088", f"compose {name}: WXTOKEN__HTTP__LISTEN=0.0.0.0:8088")
        cfg = env.get("WXTOKEN_CONFIG")
        check(f"./deploy/examples/compose.toml:{cfg}:ro" in svc.get("volumes", []),
              f"compose {name}: deploy/examples/compose.toml must be mounted read-only at WXTOKEN_CONFIG")
        check(svc.get("healthcheck", {}).get("test") == ["CMD", "wxtoken", "healthcheck"],
              f"compose {name}: healthcheck `wxtoken healthcheck`")
        dep = svc.get("depends_on", {})
        check(isinstance(dep, dict) and dep.get("redis", {}).get("condition") == "service_healthy",
              f"compose {name}: depends_on redis service_healthy")
        check(isinstance(dep, dict) and dep.get("wechat-sim", {}).get("condition") == "service_healthy",
              f"compose {name}: depends_on wechat-sim service_healthy")
        grace = duration_s(svc.get("stop_grace_period", "10s"))
        check(grace is not None and grace >= 6, f"compose {name}: stop_grace_period must exceed the 5 s SIGTERM exit")
        check(str(env.get("WXTOKEN__REDIS__URL", "")).startswith("redis://wxtoken:"),
              f"compose {name}: Redis URL must use the ACL user `wxtoken`")
        secret_env = conf["apps"][0]["secret"].get("env")
        check(secret_env in env and env[secret_env] == app.split(":", 1)[1],
              f"compose {name}: {secret_env} must equal wechat-sim's app secret")
        keys_env = conf["http"]["api_keys"].get("env")
        check(keys_env in env, f"compose {name}: {keys_env} (API keys) missing")
        api_keys.add(env.get(keys_env))
    check(len(ids) == 3 and None not in ids, f"compose: replica ids must be distinct: {ids}")
    check(len(images) == 1 and None not in images, f"compose: coordinators must share one image: {images}")

    # consumer
    cons = services["consumer"]
    cenv = env_map(cons.get("environment"))
    check(cenv.get("WXTOKEN_API_KEY") in api_keys and len(api_keys) == 1,
          "compose consumer: WXTOKEN_API_KEY must be one of the coordinators' API keys")
    check(sorted(cenv.get("COORDINATORS", "").split()) == coordinators,
          "compose consumer: COORDINATORS must list the coordinator services")
    check(cenv.get("WECHAT_BASE") == base, "compose consumer: WECHAT_BASE must be the sim")
    check(any("consumer.sh" in v for v in cons.get("volumes", [])), "compose consumer: mounts consumer.sh")
    dep = cons.get("depends_on", {})
    check(all(dep.get(c, {}).get("condition") == "service_healthy" for c in coordinators),
          "compose consumer: depends_on every coordinator being healthy")

    # What compose itself resolved (v2 `config --format json`) must agree.
    if compose_json:
        with open(compose_json, encoding="utf-8") as f:
            resolved = json.load(f)["services"]
        for name in coordinators + ["consumer"]:
            mine = env_map(services[name].get("environment"))
            theirs = env_map(resolved[name].get("environment"))
            check(mine == theirs, f"compose {name}: environment as compose resolves it differs: {theirs}")
        check(resolved["wechat-sim"].get("command") == args, "compose wechat-sim: command as resolved differs")


# ---------------------------------------------------------------- Kubernetes


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(docs, where, rendered):
    by_kind = {}
    before = len(FAILURES)
    for d in docs:
        check(isinstance(d, dict) and "apiVersion" in d and "kind" in d and "metadata" in d,
              f"{where}: a document without apiVersion/kind/metadata")
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap"):
        check(len(by_kind.get(kind, [])) == 1, f"{where}: expected one {kind}, got {len(by_kind.get(kind, []))}")
    check("Secret" not in by_kind, f"{where}: the base must not ship a Secret (values belong to the operator)")
    if len(FAILURES) > before:
        return None
    dep = by_kind["Deployment"][0]
    svc = by_kind["Service"][0]
    pdb = by_kind["PodDisruptionBudget"][0]
    cm = by_kind["ConfigMap"][0]
    spec = dep["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    podspec = pod["spec"]
    check(dep["apiVersion"] == "apps/v1", f"{where}: Deployment apps/v1")
    check(spec.get("replicas") == 3, f"{where}: Deployment replicas 3")
    check(labels_match(spec["selector"].get("matchLabels"), pod_labels),
          f"{where}: Deployment selector does not match its pod labels")
    check(podspec.get("terminationGracePeriodSeconds", 30) >= 10,
          f"{where}: terminationGracePeriodSeconds must cover the 5 s SIGTERM exit")
    psc = podspec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, f"{where}: pod must run as non-root")
    aff = podspec.get("affinity", {}).get("podAntiAffinity", {})
    terms = aff.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    check(any(t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"
              and labels_match(t["podAffinityTerm"].get("labelSelector", {}).get("matchLabels"), pod_labels)
              for t in terms), f"{where}: preferred podAntiAffinity by hostname on the pod's labels")
    ann = pod["metadata"].get("annotations", {})
    containers = podspec.get("containers", [])
    check(len(containers) == 1, f"{where}: one container")
    c = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("http") == 8088, f"{where}: container port http=8088")
    k8s_conf = load_toml("deploy", "k8s", "wxtoken.toml")
    check(k8s_conf["http"]["listen"] == f"0.0.0.0:{ports.get('http')}",
          f"{where}: wxtoken.toml [http] listen must be 0.0.0.0:<container port>")
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics"
          and ann.get("prometheus.io/port") == str(ports.get("http")),
          f"{where}: Prometheus annotations (scrape, port = container port, /metrics)")

    def probe_ok(probe, want_path):
        get = (probe or {}).get("httpGet", {})
        return get.get("path") == want_path and (get.get("port") in ports or get.get("port") in ports.values())

    check(probe_ok(c.get("readinessProbe"), "/readyz"), f"{where}: readinessProbe GET /readyz on the container port")
    check(probe_ok(c.get("livenessProbe"), "/healthz"), f"{where}: livenessProbe GET /healthz on the container port")
    res = c.get("resources", {})
    check("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}) and "memory" in res.get("limits", {}),
          f"{where}: resources requests cpu/memory and a memory limit")
    csc = c.get("securityContext", {})
    check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and "ALL" in csc.get("capabilities", {}).get("drop", []),
          f"{where}: container securityContext read-only root fs, no privilege escalation, drop ALL")
    env = {e["name"]: e for e in c.get("env", [])}
    rid = env.get("WXTOKEN__REFRESH__REPLICA_ID", {})
    check(rid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{where}: WXTOKEN__REFRESH__REPLICA_ID from metadata.name")

    # Config file: WXTOKEN_CONFIG = <config mount>/<ConfigMap key>.
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in podspec.get("volumes", [])}
    cfg_path = env.get("WXTOKEN_CONFIG", {}).get("value", "")
    cfg_dir, cfg_file = os.path.split(cfg_path)
    cfg_vol = next((n for n, v in vols.items() if "configMap" in v), None)
    check(cfg_vol and mounts.get(cfg_vol, {}).get("mountPath") == cfg_dir
          and cfg_file in cm.get("data", {}),
          f"{where}: WXTOKEN_CONFIG {cfg_path} is not the mounted ConfigMap key")
    if rendered:
        check(vols.get(cfg_vol, {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
              f"{where}: the Deployment does not reference the generated ConfigMap name")
    else:
        check(vols.get(cfg_vol, {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
              f"{where}: configMap volume name must be the configMapGenerator name")

    # Secrets: references only, consistent with secret.example.yaml and the TOML.
    example = yaml.safe_load(read("deploy", "k8s", "secret.example.yaml"))
    secret_keys = set((example.get("stringData") or {}).keys()) | set((example.get("data") or {}).keys())
    secret_name = example["metadata"]["name"]
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["name"] == secret_name and ref["key"] in secret_keys,
                  f"{where}: env {e['name']} refers to {ref}, not in secret.example.yaml")
        check(not re.search(r"SECRET|PASSWORD|API_KEYS?$", e["name"]) or "valueFrom" in e,
              f"{where}: env {e['name']} must come from a Secret")
    check("secretKeyRef" in json.dumps(env.get("WXTOKEN__REDIS__URL", {})),
          f"{where}: WXTOKEN__REDIS__URL (it carries the ACL password) from a secretKeyRef")
    sec_vol = next((n for n, v in vols.items() if "secret" in v), None)
    if check(sec_vol is not None, f"{where}: a Secret volume for app secrets and API keys"):
        sv = vols[sec_vol]["secret"]
        check(sv.get("secretName") == secret_name, f"{where}: secret volume must mount {secret_name}")
        mount = mounts.get(sec_vol, {}).get("mountPath", "")
        projected = {i["path"] for i in sv.get("items", [])} or secret_keys
        check(all(i["key"] in secret_keys for i in sv.get("items", [])),
              f"{where}: secret volume items not in secret.example.yaml")
        refs = [k8s_conf["http"].get("api_keys", {})] + [a["secret"] for a in k8s_conf["apps"]]
        for ref in refs:
            f = ref.get("file")
            check(f is not None and os.path.dirname(f) == mount and os.path.basename(f) in projected,
                  f"{where}: wxtoken.toml secret file {f} is not a projected key under {mount}")

    # Service and PDB select the pods.
    check(labels_match(svc["spec"].get("selector"), pod_labels), f"{where}: Service selector does not match the pods")
    for p in svc["spec"].get("ports", []):
        tp = p.get("targetPort")
        check(tp in ports or tp in ports.values(), f"{where}: Service targetPort {tp} is not a container port")
    check(pdb["apiVersion"] == "policy/v1", f"{where}: PodDisruptionBudget policy/v1")
    check(labels_match(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels),
          f"{where}: PDB selector does not match the pods")
    pspec = pdb["spec"]
    check(("minAvailable" in pspec and 0 < pspec["minAvailable"] < spec["replicas"])
          or ("maxUnavailable" in pspec and pspec["maxUnavailable"] >= 1),
          f"{where}: PDB must allow one disruption (minAvailable < replicas or maxUnavailable >= 1)")
    return c.get("image")


def k8s_raw_docs():
    kust = yaml.safe_load(read("deploy", "k8s", "kustomization.yaml"))
    resources = kust.get("resources", [])
    check("secret.example.yaml" not in resources, "kustomization: secret.example.yaml must not be applied")
    docs = []
    for r in resources:
        if check(os.path.exists(path("deploy", "k8s", r)), f"kustomization: resource {r} missing"):
            docs += [d for d in yaml.safe_load_all(read("deploy", "k8s", r)) if d]
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for f in gen.get("files", []):
            key, _, src = f.partition("=")
            src = src or key
            if check(os.path.exists(path("deploy", "k8s", src)), f"kustomization: generator file {src} missing"):
                data[os.path.basename(key)] = read("deploy", "k8s", src)
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return kust, docs


def check_acl():
    text = read("deploy", "redis-acl.conf")
    users = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        # redis-server refuses comments in ACL files.
        if check(line.startswith("user "), f"redis-acl.conf:{n}: every line must be `user NAME rules…`"):
            parts = line.split()
            users[parts[1]] = parts[2:]
    check("off" in users.get("default", []), "redis-acl.conf: the default user must be off")
    for name in ("wxtoken", "wxtoken-reader", "wxtoken-readonly"):
        rules = users.get(name)
        if not check(rules is not None, f"redis-acl.conf: user {name} missing"):
            continue
        check("on" in rules and "-@all" in rules, f"redis-acl.conf {name}: on, starting from -@all")
        check(not any(r in ("+@all", "allkeys", "~*", "allcommands", "nopass", "&*", "allchannels") for r in rules),
              f"redis-acl.conf {name}: grants everything")
        pw = [r for r in rules if r.startswith(">")]
        check(len(pw) == 1 and pw[0].startswith(">change-me-"),
              f"redis-acl.conf {name}: one placeholder password >change-me-…")
    for conf in (load_toml("deploy", "examples", "compose.toml"), load_toml("deploy", "k8s", "wxtoken.toml")):
        prefix = conf["redis"]["key_prefix"]
        check(f"~{prefix}:*" in users.get("wxtoken", []), f"redis-acl.conf: wxtoken lacks ~{prefix}:*")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose-json")
    ap.add_argument("--kustomize-out")
    a = ap.parse_args()
    stages = check_dockerfile()
    check_compose(stages, a.compose_json)
    kust, raw = k8s_raw_docs()
    image = check_k8s(raw, "deploy/k8s (files)", rendered=False)
    check(any(i.get("name") == image for i in kust.get("images", [])),
          f"kustomization: images[] does not name the container image {image!r}")
    if a.kustomize_out:
        with open(a.kustomize_out, encoding="utf-8") as f:
            rendered = [d for d in yaml.safe_load_all(f) if d]
        check_k8s(rendered, "deploy/k8s (kustomize build)", rendered=True)
        for d in rendered:
            check(d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "wxtoken",
                  f"kustomize: {d['kind']} lacks the part-of label")
    check_acl()
    for f in FAILURES:
        print(f"FAIL: {f}")
    print(f"deploy checks: {CHECKED[0] - len(FAILURES)} passed, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
