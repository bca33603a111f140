"""Several nodes through the older training operator: the PyTorchJob the pipeline builds, checked
field by field against the kubeflow.org/v1 PyTorchJob CRD, its life (succeeded, failed, never
scheduled, operator missing, forbidden) against the stand-in Kubernetes API server of
tests/helpers.py, and the compiled pipeline with --trainer pytorchjob. No cluster runs here."""

from __future__ import annotations

from dataclasses import replace

import kubernetes_validate
import pytest
from kfp import dsl

from adautomix.cluster.job import JobOptions, JobRequest, node_settings
from adautomix.config import ConfigError
from adautomix.cluster.launch import pytorchjob_node_command
from adautomix.cluster.pytorchjob import (
    PyTorchJobError,
    as_dict,
    pytorchjob_manifest,
    run_pytorchjob,
)
from pipeline.cli import main
from tests.helpers import (
    OPTIONS,
    OUT,
    OWNER,
    PROJECT,
    SECRET_ENV,
    TASK_CONFIG,
    StandInKubernetes,
    compiled,
    condition,
    inner_tasks,
    kubernetes_round_trip,
    lost_fields,
    role_verbs,
    shipped_rbac,
)
from tests.pipeline.pod_security import KUBERNETES_VERSIONS, as_pod, restricted_violations

IMAGE = "registry.example.com/ml/adautomix:0.1.0"
# The fields the kubeflow.org/v1 PyTorchJob CRD (training-operator v1.9,
# manifests/base/crds/kubeflow.org_pytorchjobs.yaml; Go types pkg/apis/kubeflow.org/v1/
# pytorch_types.go and common_types.go) defines on the paths this job uses.
CRD_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "spec": {"elasticPolicy", "nprocPerNode", "pytorchReplicaSpecs", "runPolicy"},
    "spec.runPolicy": {
        "activeDeadlineSeconds",
        "backoffLimit",
        "cleanPodPolicy",
        "managedBy",
        "schedulingPolicy",
        "suspend",
        "ttlSecondsAfterFinished",
    },
    "spec.pytorchReplicaSpecs.*": {"replicas", "restartPolicy", "template"},
}
REPLICA_TYPES = {"Master", "Worker"}  # the CRD's replica types of a PyTorchJob
RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}
CLEAN_POD_POLICIES = {"All", "Running", "None"}


def nodes_of(
    num_nodes: int,
    gpus_per_node: int,
    node=TASK_CONFIG,
    command=("torchrun",),
    name="adautomix-0123456789",
    image=IMAGE,
    options: JobOptions | None = None,
    owner=None,
):
    return pytorchjob_manifest(
        JobRequest(
            name,
            list(command),
            gpus_per_node,
            node_settings(node),
            OUT,
            replace(options or JobOptions(), num_nodes=num_nodes, image=image),
            owner,
        )
    )


def three_nodes(node=TASK_CONFIG, name="adautomix-0123456789"):
    return nodes_of(3, 4, node, pytorchjob_node_command(f"{OUT}/config.json"), name)


def check_against_crd(manifest: dict) -> None:
    for path, obj in (
        ("", manifest),
        ("spec", manifest["spec"]),
        ("spec.runPolicy", manifest["spec"]["runPolicy"]),
        *(
            ("spec.pytorchReplicaSpecs.*", r)
            for r in manifest["spec"]["pytorchReplicaSpecs"].values()
        ),
    ):
        unknown = set(obj) - CRD_FIELDS[path]
        assert not unknown, f"{path or 'PyTorchJob'} has fields the CRD does not define: {unknown}"


def test_three_nodes_of_four_gpus_are_a_master_and_two_workers_as_the_crd_defines_them():
    job = three_nodes()
    assert type(job).__name__ == "KubeflowOrgV1PyTorchJob"  # the SDK's typed model
    manifest = as_dict(job)
    check_against_crd(manifest)
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert manifest["metadata"]["name"] == "adautomix-0123456789"
    spec = manifest["spec"]
    assert spec["nprocPerNode"] == "4"  # a string in the CRD
    assert spec["runPolicy"]["cleanPodPolicy"] in CLEAN_POD_POLICIES
    assert spec["runPolicy"]["backoffLimit"] == 0
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == REPLICA_TYPES
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    for replica in replicas.values():
        assert replica["restartPolicy"] in RESTART_POLICIES
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"  # the operator finds its container by this name
        assert container["image"] == IMAGE
        # torchrun sizes itself from the operator's PET_* and is told where rank 0 is
        assert container["command"] == [
            "torchrun",
            "--master-addr",
            "$(MASTER_ADDR)",
            "--master-port",
            "$(MASTER_PORT)",
            "-m",
            "adautomix.cli",
            "train",
            "--config",
            f"{OUT}/config.json",
            "--resume",
        ]
        assert container["resources"] == {
            "limits": {"nvidia.com/gpu": "4"},
            "requests": {"cpu": "8", "memory": "32Gi"},
        }
        assert container["env"] == SECRET_ENV  # references to the secret, never its values
        assert {
            "name": "workspace",
            "persistentVolumeClaim": {"claimName": "adautomix-workspace"},
        } in pod["volumes"]
        assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
        assert {(m["name"], m["mountPath"]) for m in container["volumeMounts"]} == {
            ("workspace", "/mnt/adautomix"),
            ("dshm", "/dev/shm"),
        }
        assert pod["nodeSelector"] == {"gpu": "a100"}
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]


def test_affinity_and_cpu_nodes_and_an_empty_task_config():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "gpu", "operator": "In", "values": ["a100", "h100"]}
                        ]
                    }
                ]
            }
        }
    }
    config = dsl.TaskConfig(**{**vars(TASK_CONFIG), "resources": None, "affinity": affinity})
    manifest = as_dict(nodes_of(2, 0, config, name="adautomix-cpu", image="img"))
    assert manifest["spec"]["nprocPerNode"] == "1"
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    pod = replicas["Worker"]["template"]["spec"]
    assert pod["affinity"] == affinity
    assert "resources" not in pod["containers"][0]
    with pytest.raises(PyTorchJobError, match="no MLFLOW_TRACKING_URI for the PyTorchJob"):
        three_nodes(dsl.TaskConfig(**{**vars(TASK_CONFIG), "env": None}))


def test_every_replica_gets_pull_secrets_cpu_memory_a_sized_shm_labels_and_the_istio_annotation():
    manifest = as_dict(
        nodes_of(
            3,
            4,
            options=OPTIONS,
            owner=OWNER,
        )
    )
    check_against_crd(manifest)
    assert manifest["spec"]["runPolicy"]["activeDeadlineSeconds"] == 86400
    assert manifest["metadata"]["ownerReferences"] == [OWNER]
    assert manifest["metadata"]["labels"]["adautomix.dev/pipeline-run-id"] == "run-7f3a"
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        template = replica["template"]
        assert template["metadata"] == {
            "labels": manifest["metadata"]["labels"],
            "annotations": {"sidecar.istio.io/inject": "false"},
        }
        pod = template["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["terminationGracePeriodSeconds"] == 120
        assert pod["containers"][0]["resources"] == {
            "requests": {"cpu": "16", "memory": "80Gi"},
            "limits": {"cpu": "32", "memory": "144Gi", "nvidia.com/gpu": "4"},
        }
        assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod[
            "volumes"
        ]


def test_every_replica_passes_the_restricted_pod_security_standard():
    for options in (None, OPTIONS):
        manifest = as_dict(
            nodes_of(
                3,
                4,
                options=options,
            )
        )
        for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
            pod = replica["template"]["spec"]
            assert restricted_violations(pod) == []
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(as_pod(pod), version, strict=True)


def test_the_pytorchjob_round_trips_through_the_training_operator_models_without_a_loss():
    """What the step sends deserializes into kubeflow-training's KubeflowOrgV1PyTorchJob and back,
    and each replica's pod template into the kubernetes client's V1PodTemplateSpec and back,
    without losing a field; the plain Kubernetes JSON it is built from (the task config's
    settings, the security contexts) reaches it whole."""
    from kubeflow.training import ApiClient

    from adautomix.cluster.job import CONTAINER_SECURITY, POD_SECURITY

    for options in (None, OPTIONS):
        manifest = as_dict(
            nodes_of(
                3,
                4,
                command=pytorchjob_node_command(f"{OUT}/config.json"),
                options=options,
                owner=OWNER,
            )
        )
        typed = kubernetes_round_trip(manifest, "KubeflowOrgV1PyTorchJob", ApiClient())
        assert lost_fields(manifest, typed) == []
        for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
            template = replica["template"]
            assert lost_fields(template, kubernetes_round_trip(template, "V1PodTemplateSpec")) == []
            pod = template["spec"]
            (container,) = pod["containers"]
            given = {
                "pod security": (POD_SECURITY, pod["securityContext"]),
                "container security": (CONTAINER_SECURITY, container["securityContext"]),
                "env": (TASK_CONFIG.env, container["env"]),
                "tolerations": (TASK_CONFIG.tolerations, pod["tolerations"]),
                "workspace": (TASK_CONFIG.volumes[0], pod["volumes"][0]),
                "workspace mount": (TASK_CONFIG.volume_mounts[0], container["volumeMounts"][0]),
            }
            for part, (built_from, sent) in given.items():
                assert lost_fields(built_from, sent) == [], part
    manifest["spec"]["runPolicy"]["backoffLimt"] = 0  # misspelt: not a training operator field
    typed = kubernetes_round_trip(manifest, "KubeflowOrgV1PyTorchJob", ApiClient())
    assert lost_fields(manifest, typed) == [".spec.runPolicy.backoffLimt (dropped)"]


# -- against the stand-in Kubernetes API server ---------------------------------------------------

API = "/apis/kubeflow.org/v1"
RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "kubeflow.org/v1",
    "resources": [
        {
            "name": "pytorchjobs",
            "singularName": "pytorchjob",
            "namespaced": True,
            "kind": "PyTorchJob",
            "verbs": ["create", "get", "delete"],
        }
    ],
}


def replica_statuses(active: int) -> dict:
    return {"Master": {"active": min(active, 1)}, "Worker": {"active": max(active - 1, 0)}}


class StandInTrainingOperator(StandInKubernetes):
    """The same server, answering the training operator's kubeflow.org/v1 pytorchjobs."""

    api, plural, resources = API, "pytorchjobs", RESOURCES


def run(stand_in, schedule_timeout=30.0, said=None):
    return run_pytorchjob(
        three_nodes(),
        "team-a",
        stand_in.client,
        schedule_timeout=schedule_timeout,
        poll_interval=0.02,
        say=(said.append if said is not None else print),
    )


def test_a_pytorchjob_is_created_as_built_and_watched_until_it_succeeds():
    created = condition("Created", "PyTorchJobCreated", "created")
    statuses = [
        {"conditions": [created]},
        {
            "conditions": [created, condition("Running", "PyTorchJobRunning", "running")],
            "replicaStatuses": replica_statuses(3),
        },
        {
            "conditions": [created, condition("Succeeded", "PyTorchJobSucceeded", "done")],
            "replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"succeeded": 2}},
        },
    ]
    said = []
    with StandInTrainingOperator(statuses) as k8s:
        final = run(k8s, said=said)
    assert k8s.created == as_dict(three_nodes())
    assert ("POST", f"{API}/namespaces/team-a/pytorchjobs") in k8s.requests
    assert [c.type for c in final.status.conditions] == ["Created", "Succeeded"]
    assert any("waiting for its pods" in line for line in said)
    assert any("running on 3 nodes" in line for line in said)
    assert not any(method == "DELETE" for method, _ in k8s.requests)


def test_a_failed_pytorchjob_fails_the_step_with_its_reason():
    failed = {
        "conditions": [
            condition(
                "Failed",
                "PyTorchJobFailed",
                "PyTorchJob adautomix-0123456789 is failed because 1 Worker replica(s) failed.",
            )
        ],
        "replicaStatuses": {"Master": {"active": 1}, "Worker": {"failed": 1}},
    }
    with StandInTrainingOperator([{"replicaStatuses": replica_statuses(3)}, failed]) as k8s:
        with pytest.raises(
            PyTorchJobError,
            match="PyTorchJob team-a/adautomix-0123456789 failed: "
            "PyTorchJobFailed: .*1 Worker replica.*failed.*"
            "training.kubeflow.org/job-name=.*re-run "
            "resumes",
        ):
            run(k8s)


def test_a_pytorchjob_that_never_gets_its_nodes_times_out_and_is_deleted():
    pending = {
        "conditions": [condition("Created", "PyTorchJobCreated", "created")],
        "replicaStatuses": {"Master": {}, "Worker": {}},
    }
    with StandInTrainingOperator([pending]) as k8s:
        with pytest.raises(
            PyTorchJobError,
            match=r"no running node after 0.2 s \(waiting for "
            r"its pods\).*3 nodes with 4 nvidia.com/gpu "
            r"each.*deleted",
        ):
            run(k8s, schedule_timeout=0.2)
    name = k8s.created["metadata"]["name"]
    assert ("DELETE", f"{API}/namespaces/team-a/pytorchjobs/{name}") in k8s.requests


def test_without_the_training_operator_the_step_says_so_and_creates_nothing():
    with StandInTrainingOperator(served=False) as k8s:
        with pytest.raises(
            PyTorchJobError,
            match="training operator is not installed.*"
            "kubeflow.org/v1 is not served.*HTTP 404.*"
            "docs/cluster.md",
        ):
            run(k8s)
    assert k8s.requests == [("GET", API)] and k8s.created is None


def test_a_service_account_without_rbac_is_pointed_at_the_manifest():
    with StandInTrainingOperator(create_status=403) as k8s:
        with pytest.raises(
            PyTorchJobError,
            match="403 Forbidden.*pytorchjobs in namespace team-a.*deploy/rbac.yaml",
        ):
            run(k8s)


def test_the_shipped_rbac_lets_the_pipeline_create_watch_and_delete_pytorchjobs():
    assert {"create", "get", "delete"} <= role_verbs(shipped_rbac(), "pytorchjobs", "kubeflow.org")


# -- the compiled pipeline ------------------------------------------------------------------------


def test_two_nodes_compile_to_a_train_step_that_creates_a_pytorchjob(tmp_path):
    spec, executors = compiled(
        tmp_path,
        "--num-gpus",
        "4",
        "--num-nodes",
        "2",
        "--trainer",
        "pytorchjob",
        "--batch-size",
        "128",
    )
    job = inner_tasks(spec)["train"]["inputs"]["parameters"]
    options = job["job_options"]["runtimeValue"]["constant"]
    assert (options["trainer"], options["num_nodes"]) == ("pytorchjob", 2)
    step = executors["exec-train"]
    assert {s["secretName"] for s in step["secretAsEnv"]} == {"adautomix-mlflow"}
    assert "emptyDirMounts" not in step  # /dev/shm is the job's nodes', not the waiting pod's


def test_the_default_trainer_is_trainjob(tmp_path):
    spec, _ = compiled(tmp_path, "--num-gpus", "4", "--num-nodes", "2", "--batch-size", "128")
    job = inner_tasks(spec)["train"]["inputs"]["parameters"]
    assert job["job_options"]["runtimeValue"]["constant"]["trainer"] == "trainjob"


def test_an_unknown_trainer_fails_on_the_command_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "pipeline.yaml"
    assert (
        main(
            [
                "compile",
                "--output",
                str(path),
                "--workspace",
                str(PROJECT),
                "--num-nodes",
                "2",
                "--trainer",
                "mpijob",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer 'mpijob' is not one of trainjob, pytorchjob" in err[0]
    assert not path.exists()
    with pytest.raises(ConfigError, match="pytorchjob"):
        from pipeline.cluster_settings import ClusterSettings

        ClusterSettings(trainer="PyTorchJob")
