"""deploy/kuberay/rayservice.yaml uses only ray.io/v1 RayService fields, embeds
configs/production.yaml unchanged, and places the models on the GPU group.

The field lists are the KubeRay v1.7.0 CRD reference (docs/reference/api.md, generated from
ray-operator/apis/ray/v1) and, for the pod template, Kubernetes core/v1. An unknown field is a
failure: the API server would drop it silently (or reject it), so a typo must not pass.
"""

import copy
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import pytest
import yaml

from serve_app.runtime.config_check import ConfigError, validate_args
from tests.deploy_checks import (
    ROOT,
    gateway_args,
    pinned_ray_series,
    project_version,
    ray_image_version,
    serve_config,
)

MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
PRODUCTION = ROOT / "configs" / "production.yaml"
SECRET = "llm-gateway-secrets"


@dataclass(frozen=True)
class ListOf:
    item: "Schema"


ANY = "any"  # a leaf, or an object whose inside is not checked
STRINGS = "string map"  # free keys, string values (map[string]string)
QUANTITIES = "quantity map"  # free keys, int-or-string values
Schema: TypeAlias = Mapping[str, "Schema"] | ListOf | str


def fields(*names: str, **nested: Schema) -> dict[str, Schema]:
    return {**dict.fromkeys(names, ANY), **nested}


OBJECT_META = fields("name", "namespace", "generateName", labels=STRINGS, annotations=STRINGS)
KEY_REF = fields("name", "key", "optional")
ENV_VAR = fields(
    "name",
    "value",
    valueFrom=fields("fieldRef", "resourceFieldRef", secretKeyRef=KEY_REF, configMapKeyRef=KEY_REF),
)
ENV_FROM = fields(
    "prefix", secretRef=fields("name", "optional"), configMapRef=fields("name", "optional")
)
RESOURCES = fields("claims", limits=QUANTITIES, requests=QUANTITIES)
CONTAINER = fields(
    *("args", "command", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name"),
    *("readinessProbe", "resizePolicy", "restartPolicy", "securityContext", "startupProbe"),
    *("stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty"),
    *("volumeDevices", "workingDir"),
    env=ListOf(ENV_VAR),
    envFrom=ListOf(ENV_FROM),
    ports=ListOf(fields("containerPort", "hostIP", "hostPort", "name", "protocol")),
    resources=RESOURCES,
    volumeMounts=ListOf(
        fields(
            *("mountPath", "mountPropagation", "name", "readOnly", "recursiveReadOnly"),
            *("subPath", "subPathExpr"),
        )
    ),
)
VOLUME = fields(
    *("name", "configMap", "csi", "ephemeral", "hostPath", "nfs", "projected", "secret"),
    emptyDir=fields("medium", "sizeLimit"),
    persistentVolumeClaim=fields("claimName", "readOnly"),
)
POD_SPEC = fields(
    *("activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig"),
    *("dnsPolicy", "enableServiceLinks", "hostAliases", "hostIPC", "hostNetwork", "hostPID"),
    *("hostUsers", "hostname", "imagePullSecrets", "nodeName", "os", "overhead"),
    *("preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims"),
    *("resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates"),
    *("securityContext", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace"),
    *("subdomain", "terminationGracePeriodSeconds", "topologySpreadConstraints"),
    containers=ListOf(CONTAINER),
    initContainers=ListOf(CONTAINER),
    nodeSelector=STRINGS,
    tolerations=ListOf(fields("effect", "key", "operator", "tolerationSeconds", "value")),
    volumes=ListOf(VOLUME),
)
POD_TEMPLATE = fields(metadata=OBJECT_META, spec=POD_SPEC)
HEAD_GROUP = fields(
    *("headService", "enableIngress", "ingressOptions", "serviceType"),
    template=POD_TEMPLATE,
    resources=STRINGS,
    labels=STRINGS,
    rayStartParams=STRINGS,
)
WORKER_GROUP = fields(
    *("suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds"),
    *("priority", "numOfHosts"),
    resources=STRINGS,
    labels=STRINGS,
    rayStartParams=STRINGS,
    template=POD_TEMPLATE,
    scaleStrategy=fields("workersToDelete"),
)
AUTOSCALER = fields(
    *("resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds"),
    *("upscalingMode", "version", "env", "envFrom", "volumeMounts", "command", "args"),
)
RAY_CLUSTER_SPEC = fields(
    *("suspend", "managedBy", "enableInTreeAutoscaling", "gcsFaultToleranceOptions"),
    *("historyServerOptions", "networkPolicy", "rayVersion"),
    upgradeStrategy=fields("type"),
    authOptions=fields("enableK8sTokenAuth", "secretName", "mode"),
    autoscalerOptions=AUTOSCALER,
    headServiceAnnotations=STRINGS,
    tlsOptions=fields("enabled"),
    headGroupSpec=HEAD_GROUP,
    workerGroupSpecs=ListOf(WORKER_GROUP),
)
RAY_SERVICE = fields(
    "apiVersion",
    "kind",
    metadata=OBJECT_META,
    spec=fields(
        *("rayClusterDeletionDelaySeconds", "serviceUnhealthySecondThreshold", "managedBy"),
        *("deploymentUnhealthySecondThreshold", "serveService", "serveConfigV2"),
        *("excludeHeadPodFromServeSvc", "suspend"),
        upgradeStrategy=fields(
            "type",
            clusterUpgradeOptions=fields(
                "maxSurgePercent", "stepSizePercent", "intervalSeconds", "gatewayClassName"
            ),
        ),
        rayClusterConfig=RAY_CLUSTER_SPEC,
    ),
)
ENUMS = {
    "spec.upgradeStrategy.type": {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"},
    "spec.rayClusterConfig.authOptions.mode": {"disabled", "token"},
    "spec.rayClusterConfig.autoscalerOptions.upscalingMode": {
        "Default",
        "Aggressive",
        "Conservative",
    },
}


def schema_errors(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Every field of `value` that `schema` does not know, and every ill-typed map value."""
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            e
            for i, item in enumerate(value)
            for e in schema_errors(item, schema.item, f"{path}[{i}]")
        ]
    if schema == ANY:
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected an object"]
    if schema == STRINGS:
        return [f"{path}.{k}: not a string" for k, v in value.items() if not isinstance(v, str)]
    if schema == QUANTITIES:
        return [
            f"{path}.{k}: not a quantity"
            for k, v in value.items()
            if isinstance(v, bool) or not isinstance(v, (str, int, float))
        ]
    assert isinstance(schema, Mapping)
    errors = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            errors.append(f"{where}: unknown field")
        else:
            errors.extend(schema_errors(item, schema[key], where))
    return errors


@pytest.fixture
def manifest() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert len(documents) == 1, "one RayService, nothing else (the Secret is made by hand)"
    document: dict[str, Any] = documents[0]
    return document


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["rayClusterConfig"]
    return spec


def groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The head group (as `head`) and every worker group, by name."""
    spec = cluster_spec(manifest)
    return {"head": spec["headGroupSpec"]} | {g["groupName"]: g for g in spec["workerGroupSpecs"]}


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = group["template"]["spec"]["containers"]
    return found


def custom_resources(group: dict[str, Any]) -> dict[str, float]:
    """The `resources` rayStartParam, which KubeRay passes to the shell as it is written."""
    raw = group["rayStartParams"].get("resources")
    if raw is None:
        return {}
    (decoded,) = shlex.split(raw)
    resources: dict[str, float] = json.loads(decoded)
    return resources


def test_it_is_a_ray_io_v1_rayservice(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", manifest["metadata"]["name"])


def test_every_field_is_a_rayservice_crd_field(manifest: dict[str, Any]) -> None:
    assert schema_errors(manifest, RAY_SERVICE) == []
    for path, allowed in ENUMS.items():
        node: Any = manifest
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        assert node is None or node in allowed, (path, node)


def _rename(node: dict[str, Any], old: str, new: str) -> None:
    node[new] = node.pop(old)


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "workerGroupSpec": (
        lambda m: _rename(m["spec"]["rayClusterConfig"], "workerGroupSpecs", "workerGroupSpec"),
        "spec.rayClusterConfig.workerGroupSpec: unknown field",
    ),
    "serveConfig": (
        lambda m: _rename(m["spec"], "serveConfigV2", "serveConfig"),
        "spec.serveConfig: unknown field",
    ),
    "container resource": (
        lambda m: _rename(containers(groups(m)["gpu"])[0], "resources", "resource"),
        "template.spec.containers[0].resource: unknown field",
    ),
    "numeric rayStartParam": (
        lambda m: groups(m)["head"]["rayStartParams"].update({"num-gpus": 0}),
        "headGroupSpec.rayStartParams.num-gpus: not a string",
    ),
    "secretKeyRef": (
        lambda m: _rename(
            containers(groups(m)["head"])[0]["env"][0]["valueFrom"], "secretKeyRef", "secretRef"
        ),
        "env[0].valueFrom.secretRef: unknown field",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_field_check_catches_a_typo(manifest: dict[str, Any], mutation: str) -> None:
    broken = copy.deepcopy(manifest)
    change, expected = MUTATIONS[mutation]
    change(broken)
    errors = schema_errors(broken, RAY_SERVICE)
    assert any(error.endswith(expected) for error in errors), errors


def test_serve_config_is_configs_production_yaml(manifest: dict[str, Any]) -> None:
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert embedded == serve_config(PRODUCTION), (
        "serveConfigV2 and configs/production.yaml differ: change both together"
    )


def secret_env(container: dict[str, Any]) -> dict[str, bool]:
    """Variable name -> whether the Secret must hold it, for env taken from the Secret."""
    found = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == SECRET and ref["key"] == item["name"], item
            found[item["name"]] = not ref.get("optional", False)
    return found


def test_serve_config_validates_as_production_with_the_secrets_env(
    manifest: dict[str, Any],
) -> None:
    all_args = gateway_args(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    assert all_args
    environ = {
        "GATEWAY_ADMIN_KEY": "admin-key-for-the-test-0123456789",
        "LEDGER_URL": "postgresql://gateway:pw@db.internal:5432/gateway",
    }
    for args in all_args:
        config = validate_args(args, "serveConfigV2", environ, proxy_location="EveryNode")
        assert config.environment == "production" and config.auth.enabled
        with pytest.raises(ConfigError, match=config.auth.admin_key_env):
            validate_args(args, "serveConfigV2", {"LEDGER_URL": environ["LEDGER_URL"]})
        with pytest.raises(ConfigError, match="LEDGER_URL"):
            validate_args(args, "serveConfigV2", {**environ, "LEDGER_URL": ""})
        for group in groups(manifest).values():
            for container in containers(group):
                env = secret_env(container)
                assert env.get(config.auth.admin_key_env) is True, container["name"]
                assert env.get("LEDGER_URL") is True, container["name"]  # required
                assert config.commercial is not None
                for provider in (config.commercial.openai, config.commercial.anthropic):
                    assert provider.api_key_env in env, (container["name"], provider.api_key_env)


def test_the_gpu_group_requests_gpus_and_advertises_gpu_node(manifest: dict[str, Any]) -> None:
    by_name = groups(manifest)
    gpu_limit = int(containers(by_name["gpu"])[0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpu_limit >= 1
    assert custom_resources(by_name["gpu"]) == {"gpu_node": 1}
    assert by_name["head"]["rayStartParams"]["num-gpus"] == "0"
    assert by_name["head"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    for name, group in by_name.items():
        if name != "gpu":
            assert "gpu_node" not in custom_resources(group), name
            for container in containers(group):
                assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), name
    models = [m for args in gateway_args(serve_config(PRODUCTION)) for m in args["models"]]
    gpu_models = [m for m in models if m.get("num_gpus", 0) > 0]
    assert gpu_models
    for model in gpu_models:
        assert 0 < model["resources"].get("gpu_node", 0) <= 1, model["id"]
        assert model["num_gpus"] <= gpu_limit, model["id"]


def test_ray_version_and_images_match_the_dockerfile(manifest: dict[str, Any]) -> None:
    ray_version = cluster_spec(manifest)["rayVersion"]
    assert ray_version.rsplit(".", 1)[0] == pinned_ray_series()
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base and ray_image_version(base.group(1))[0] == ray_version
    for name, group in groups(manifest).items():
        for container in containers(group):
            assert container["image"].rsplit("/", 1)[-1] == f"llm-gateway:{project_version()}", name


def test_ports_and_replica_bounds(manifest: dict[str, Any]) -> None:
    serve_port = serve_config(PRODUCTION)["http_options"]["port"]
    for name, group in groups(manifest).items():
        ports = {p["name"]: p["containerPort"] for p in containers(group)[0]["ports"]}
        assert ports["serve"] == serve_port, name  # proxy_location: EveryNode
        if name == "head":
            assert ports["gcs-server"] == 6379 and ports["dashboard"] == 8265
        else:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    assert cluster_spec(manifest)["authOptions"]["mode"] == "token"
