"""Several nodes: the TrainJob the pipeline builds, checked field by field against the Trainer
v1alpha1 CRD, and its life (created, watched, failed, never scheduled, Trainer missing) against a
stand-in Kubernetes API server on 127.0.0.1 that records every request. No cluster runs here."""

from __future__ import annotations

import re
from dataclasses import replace

import kubernetes_validate
import pytest
from kfp import dsl

from adautomix.cluster.launch import trainer_node_command
from adautomix.cluster.job import JobOptions, JobRequest, pod_owner, run_labels
from adautomix.cluster.trainjob import (
    TrainJobError,
    job_name,
    node_settings,
    run_trainjob,
    trainjob_manifest,
)
from tests.helpers import (
    API,
    OPTIONS,
    OUT,
    OWNER,
    SECRET_ENV,
    TASK_CONFIG,
    StandInKubernetes,
    condition,
    kubernetes_round_trip,
    lost_fields,
    role_verbs,
    shipped_rbac,
)
from tests.pipeline.pod_security import KUBERNETES_VERSIONS, as_pod, restricted_violations

# The fields the v1alpha1 TrainJob CRD (manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml,
# Go types pkg/apis/trainer/v1alpha1/trainjob_types.go) defines on the paths this job uses.
CRD_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "spec": {
        "runtimeRef",
        "initializer",
        "trainer",
        "runtimePatches",
        "suspend",
        "activeDeadlineSeconds",
        "managedBy",
    },
    "spec.runtimeRef": {"name", "apiGroup", "kind"},
    "spec.trainer": {
        "image",
        "command",
        "args",
        "env",
        "numNodes",
        "resourcesPerNode",
        "numProcPerNode",
    },
    "spec.runtimePatches[]": {"manager", "time", "trainingRuntimeSpec"},
    "spec.runtimePatches[].trainingRuntimeSpec": {"template"},
    "spec.runtimePatches[].trainingRuntimeSpec.template": {"metadata", "spec"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec": {"replicatedJobs"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[]": {
        "name",
        "template",
    },
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template": {
        "metadata",
        "spec",
    },
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec": {
        "template"
    },
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template": {"metadata", "spec"},
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template.spec": {
        "serviceAccountName",
        "volumes",
        "initContainers",
        "containers",
        "imagePullSecrets",
        "securityContext",
        "nodeSelector",
        "affinity",
        "tolerations",
        "schedulingGates",
        "terminationGracePeriodSeconds",
    },
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template.metadata": {"labels", "annotations"},  # the only metadata a patch may set
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec."
    "template.spec.containers[]": {"name", "env", "volumeMounts", "securityContext"},
}


def two_nodes(node=TASK_CONFIG, name="adautomix-0123456789", options=JobOptions(), owner=None):
    return trainjob_manifest(
        JobRequest(
            name,
            trainer_node_command(f"{OUT}/config.json"),
            gpus_per_node=4,
            node=node_settings(node),
            output_dir=OUT,
            options=replace(options, num_nodes=2, image="registry.example.com/ml/adautomix:0.1.0"),
            owner=owner,
        )
    )


def three_nodes_of(gpus_per_node: int, node) -> dict:
    request = JobRequest("adautomix-n", ["torchrun"], gpus_per_node, node, OUT, JobOptions(3))
    return trainjob_manifest(request).to_dict()


def check_against_crd(obj, path: str = "") -> None:
    if path in CRD_FIELDS:
        unknown = set(obj) - CRD_FIELDS[path]
        assert not unknown, f"{path or 'TrainJob'} has fields the CRD does not define: {unknown}"
        for key, value in obj.items():
            child = f"{path}.{key}" if path else key
            if isinstance(value, dict):
                check_against_crd(value, child)
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for item in value:
                    check_against_crd(item, child + "[]")


def node_pod(manifest: dict) -> dict:
    (patch,) = manifest["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"  # the trainer job of the torch-distributed runtime
    return job["template"]["spec"]["template"]["spec"]


def test_two_nodes_of_four_gpus_as_the_trainer_crd_defines_them():
    manifest = two_nodes().to_dict()
    check_against_crd(manifest)
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "trainer.kubeflow.org/v1alpha1",
        "TrainJob",
    )
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert manifest["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "kind": "ClusterTrainingRuntime",
        "apiGroup": "trainer.kubeflow.org",
    }
    trainer = manifest["spec"]["trainer"]
    assert trainer["image"] == "registry.example.com/ml/adautomix:0.1.0"
    # torchrun takes the node count, rank and rendezvous from Trainer's PET_* variables
    assert trainer["command"] == [
        "torchrun",
        "-m",
        "adautomix.cli",
        "train",
        "--config",
        f"{OUT}/config.json",
        "--resume",
    ]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"] == {
        "limits": {"nvidia.com/gpu": "4"},
        "requests": {"cpu": "8", "memory": "32Gi"},
    }
    assert trainer["env"] == SECRET_ENV  # references to the secret, never its values
    pod = node_pod(manifest)
    assert {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": "adautomix-workspace"},
    } in pod["volumes"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert {(m["name"], m["mountPath"]) for m in container["volumeMounts"]} == {
        ("workspace", "/mnt/adautomix"),
        ("dshm", "/dev/shm"),
    }
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_the_gpu_count_comes_from_the_step_and_nodes_without_gpus_run_one_process():
    no_gpu_request = dsl.TaskConfig(**{**vars(TASK_CONFIG), "resources": None})
    manifest = three_nodes_of(0, node_settings(no_gpu_request))
    assert manifest["spec"]["trainer"]["numProcPerNode"] == 1
    assert "resourcesPerNode" not in manifest["spec"]["trainer"]
    manifest = three_nodes_of(2, node_settings(no_gpu_request))
    assert manifest["spec"]["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "2"}}


@pytest.mark.parametrize(
    "missing, message",
    [
        ({"env": None}, "no MLFLOW_TRACKING_URI"),
        ({"volumes": None, "volume_mounts": None}, "no volume in the task config is mounted above"),
    ],
)
def test_an_empty_task_config_is_refused_before_anything_is_created(missing, message):
    with pytest.raises(TrainJobError, match=message):
        two_nodes(dsl.TaskConfig(**{**vars(TASK_CONFIG), **missing}))


def test_job_names_are_fresh_rfc1035_labels():
    names = {job_name() for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names)


# -- against the stand-in Kubernetes API server (tests/helpers.py) -----------------------------


def node_jobs(ready: int) -> list[dict]:
    return [
        {"name": "node", "ready": ready, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}
    ]


def run(stand_in, schedule_timeout=30.0, said=None):
    return run_trainjob(
        two_nodes(),
        "team-a",
        stand_in.client,
        schedule_timeout=schedule_timeout,
        poll_interval=0.02,
        say=(said.append if said is not None else print),
    )


def test_a_trainjob_is_created_as_built_and_watched_until_it_completes():
    statuses = [
        {},
        {"jobsStatus": node_jobs(ready=1)},
        {
            "conditions": [condition("Complete", "JobsCompleted", "done")],
            "jobsStatus": node_jobs(ready=0),
        },
    ]
    said = []
    with StandInKubernetes(statuses) as k8s:
        final = run(k8s, said=said)
    assert k8s.created == two_nodes().to_dict()
    assert ("POST", f"{API}/namespaces/team-a/trainjobs") in k8s.requests
    assert [c.type for c in final.status.conditions] == ["Complete"]
    assert any("running on 2 nodes" in line for line in said)
    assert not any(method == "DELETE" for method, _ in k8s.requests)


def test_a_failed_trainjob_fails_the_step_with_its_reason():
    failed = {
        "conditions": [condition("Failed", "BackoffLimitExceeded", "node-0 exited with code 1")]
    }
    with StandInKubernetes([{"jobsStatus": node_jobs(ready=1)}, failed]) as k8s:
        with pytest.raises(
            TrainJobError,
            match="failed: BackoffLimitExceeded: node-0 exited with code 1.*re-run resumes",
        ):
            run(k8s)


def test_a_trainjob_that_never_gets_its_nodes_times_out_and_is_deleted():
    waiting = {
        "conditions": [condition("Suspended", "Suspended", "waiting for quota")],
        "jobsStatus": node_jobs(ready=0),
    }
    with StandInKubernetes([waiting]) as k8s:
        with pytest.raises(
            TrainJobError,
            match=r"no running node after 0.2 s \(suspended "
            r"\(Suspended\)\).*2 nodes with 4 nvidia.com/gpu",
        ):
            run(k8s, schedule_timeout=0.2)
    name = k8s.created["metadata"]["name"]
    assert ("DELETE", f"{API}/namespaces/team-a/trainjobs/{name}") in k8s.requests


def test_a_trainjob_deleted_while_the_step_waits_fails_the_step():
    with StandInKubernetes(vanish=True) as k8s:
        with pytest.raises(TrainJobError, match="is gone: it was deleted while the step waited"):
            run(k8s)


def test_without_trainer_installed_the_step_says_so_and_creates_nothing():
    with StandInKubernetes(served=False) as k8s:
        with pytest.raises(TrainJobError, match="Kubeflow Trainer is not installed.*HTTP 404"):
            run(k8s)
    assert k8s.requests == [("GET", API)]


def test_a_missing_runtime_is_named():
    with StandInKubernetes(runtime=False) as k8s:
        with pytest.raises(
            TrainJobError, match="ClusterTrainingRuntime 'torch-distributed' does not exist"
        ):
            run(k8s)
    assert k8s.created is None


def test_a_service_account_without_rbac_is_pointed_at_the_manifest():
    with StandInKubernetes(create_status=403) as k8s:
        with pytest.raises(TrainJobError, match="403 Forbidden.*team-a.*deploy/rbac.yaml"):
            run(k8s)


def test_the_shipped_rbac_lets_the_pipeline_create_watch_and_delete_trainjobs():
    docs = shipped_rbac()
    assert {"create", "get", "delete"} <= role_verbs(docs, "trainjobs", "trainer.kubeflow.org")
    runtimes = [
        r
        for r in docs
        if r["kind"] == "ClusterRole"
        for rule in r["rules"]
        if "clustertrainingruntimes" in rule["resources"]
    ]
    assert runtimes, "reading the runtime is what names a missing one"
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    role = next(d for d in docs if d["kind"] == "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_a_run_that_stopped_early_is_not_passed_on_and_its_checkpoint_stays(tmp_path):
    """What the TrainJob step reads back once the job is over: only a finished run goes on to
    evaluate and register; an unfinished one keeps its checkpoint for the re-run."""
    from adautomix.config import RunConfig
    from adautomix.engine.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from adautomix.steps import finished_result

    RunConfig(epochs=2, output_dir=str(tmp_path)).save(tmp_path / "config.json")
    with pytest.raises(RuntimeError, match="no checkpoint|after epoch 0 of 2"):
        finished_result(tmp_path)
    epoch = {
        "epoch": 1,
        "step": 3,
        "run_id": "r1",
        "history": [{"epoch": 1, "train_loss": 2.0, "test_top1": 10.0}],
    }
    save_checkpoint(epoch, tmp_path)
    with pytest.raises(RuntimeError, match="stopped after epoch 1 of 2.*re-run resumes"):
        finished_result(tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    save_checkpoint(
        {
            **epoch,
            "epoch": 2,
            "history": [*epoch["history"], {"epoch": 2, "train_loss": 1.0, "test_top1": 30.0}],
        },
        tmp_path,
    )
    result = finished_result(tmp_path)
    assert (result.run_id, result.metrics["test_top1"], result.metrics["test_top1_median10"]) == (
        "r1",
        30.0,
        20.0,
    )


# -- the job belongs to its step ------------------------------------------------------------------


def test_the_nodes_get_pull_secrets_cpu_memory_a_sized_shm_labels_and_the_istio_annotation():
    manifest = two_nodes(options=OPTIONS, owner=OWNER).to_dict()
    check_against_crd(manifest)
    trainer = manifest["spec"]["trainer"]
    # the job options' CPU and memory replace the task config's; the GPUs are the step's own
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "16", "memory": "80Gi"},
        "limits": {"cpu": "32", "memory": "144Gi", "nvidia.com/gpu": "4"},
    }
    assert manifest["spec"]["activeDeadlineSeconds"] == 86400
    labels = manifest["metadata"]["labels"]
    assert labels["adautomix.dev/pipeline-run-id"] == "run-7f3a"
    assert labels["adautomix.dev/step"] == "train"
    assert labels["adautomix.dev/checkpoint"] == OUT.rsplit("/", 1)[1]
    assert manifest["metadata"]["ownerReferences"] == [OWNER]
    (patch,) = manifest["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    template = job["template"]["spec"]["template"]
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert template["metadata"]["labels"] == labels
    pod = template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]


def test_the_nodes_pass_the_restricted_pod_security_standard():
    for manifest in (two_nodes().to_dict(), two_nodes(options=OPTIONS, owner=OWNER).to_dict()):
        check_against_crd(manifest)
        pod = node_pod(manifest)
        assert restricted_violations(pod) == []
        # spelled as the Pod API has it (kubernetes-validate's schemas, offline, strictly)
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(as_pod(pod), version, strict=True)


def test_the_trainjob_round_trips_through_the_trainer_api_and_its_pods_through_the_pod_api():
    """What the step sends deserializes into kubeflow-trainer-api's TrainJob (the Trainer v2.3
    API) and back, and the nodes' pod patch into the kubernetes client's V1PodSpec and back,
    without losing a field; the plain Kubernetes JSON the job is built from (the task config's
    settings, the security contexts) reaches it whole. A dropped field is one the upstream
    definitions do not have, which the API server would prune or refuse."""
    from kubeflow_trainer_api import models as m

    from adautomix.cluster.job import CONTAINER_SECURITY, POD_SECURITY

    def trainer_round_trip(manifest: dict) -> dict:
        return m.TrainerV1alpha1TrainJob.from_dict(manifest).to_dict()

    for manifest in (two_nodes().to_dict(), two_nodes(options=OPTIONS, owner=OWNER).to_dict()):
        assert lost_fields(manifest, trainer_round_trip(manifest)) == []
        pod = node_pod(manifest)
        assert lost_fields(pod, kubernetes_round_trip(pod, "V1PodSpec")) == []
        (container,) = pod["containers"]
        given = {
            "pod security": (POD_SECURITY, pod["securityContext"]),
            "container security": (CONTAINER_SECURITY, container["securityContext"]),
            "env": (TASK_CONFIG.env, manifest["spec"]["trainer"]["env"]),
            "tolerations": (TASK_CONFIG.tolerations, pod["tolerations"]),
            "workspace": (TASK_CONFIG.volumes[0], pod["volumes"][0]),
            "workspace mount": (TASK_CONFIG.volume_mounts[0], container["volumeMounts"][0]),
        }
        for part, (built_from, sent) in given.items():
            assert lost_fields(built_from, sent) == [], part
    unknown = two_nodes().to_dict()
    unknown["spec"]["trainer"]["numGPUsPerNode"] = 4  # not a Trainer API field
    assert lost_fields(unknown, trainer_round_trip(unknown)) == [
        ".spec.trainer.numGPUsPerNode (dropped)"
    ]


def test_label_values_are_valid_whatever_the_run_and_folder_are_called():
    labels = run_labels("my pipeline!", "", "/mnt/x/" + "a" * 80 + "-0123456789ab")
    assert "adautomix.dev/pipeline-run-id" not in labels  # empty: left out
    assert labels["adautomix.dev/pipeline"] == "my-pipeline"
    value = labels["adautomix.dev/checkpoint"]
    assert len(value) <= 63 and value.endswith("-0123456789ab")
    assert all(
        re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", v) for v in labels.values()
    )


def test_every_attempt_of_one_step_names_its_job_alike_and_other_steps_differently():
    name = job_name("run-7f3a", OUT)
    assert name == job_name("run-7f3a", OUT)
    assert name != job_name("run-7f3a", OUT + "-other") and name != job_name("run-8b4c", OUT)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


RUNNING = {"jobsStatus": node_jobs(ready=1)}
COMPLETE = {
    "conditions": [condition("Complete", "JobsCompleted", "done")],
    "jobsStatus": node_jobs(ready=0),
}


def earlier_attempt(status: dict, owner_uid="uid-first-pod") -> dict:
    job = two_nodes(
        options=OPTIONS, owner={**OWNER, "name": "first-pod", "uid": owner_uid}
    ).to_dict()
    return {**job, "status": status}


def test_a_retried_step_adopts_the_job_of_the_attempt_before_instead_of_starting_another():
    with StandInKubernetes([RUNNING, COMPLETE], existing=earlier_attempt(RUNNING)) as k8s:
        said = []
        run_trainjob(
            two_nodes(options=OPTIONS, owner=OWNER),
            "team-a",
            k8s.client,
            poll_interval=0.02,
            say=said.append,
        )
    assert k8s.created is None  # the only POST was answered 409
    assert [m for m, _ in k8s.requests].count("POST") == 1
    assert not any(m == "DELETE" for m, _ in k8s.requests)
    assert any(line.startswith("adopted TrainJob") for line in said)
    # this attempt's pod joins the owners, so the job outlives the first attempt's pod
    (patch,) = k8s.patches
    assert [o["uid"] for o in patch["metadata"]["ownerReferences"]] == [
        "uid-first-pod",
        "uid-step-pod",
    ]


def test_a_retried_step_replaces_the_failed_job_of_the_attempt_before():
    failed = {"conditions": [condition("Failed", "BackoffLimitExceeded", "node-1 was evicted")]}
    with StandInKubernetes([RUNNING, COMPLETE], existing=earlier_attempt(failed)) as k8s:
        run_trainjob(
            two_nodes(options=OPTIONS, owner=OWNER),
            "team-a",
            k8s.client,
            poll_interval=0.02,
            say=lambda line: None,
        )
    name = k8s.created["metadata"]["name"]
    methods = [m for m, p in k8s.requests if p.startswith(f"{API}/namespaces")]
    assert ("DELETE", f"{API}/namespaces/team-a/trainjobs/{name}") in k8s.requests
    assert methods.index("DELETE") < len(methods) - 1 - methods[::-1].index("POST")
    assert k8s.created == two_nodes(options=OPTIONS, owner=OWNER).to_dict()


def test_a_failed_status_read_deletes_the_job_so_that_it_does_not_train_unwatched():
    with StandInKubernetes([RUNNING], read_error_after=2) as k8s:
        with pytest.raises(
            TrainJobError,
            match="reading TrainJob team-a/adautomix-0123456789 "
            "failed: HTTP 500.*the job is deleted",
        ):
            run(k8s)
    assert ("DELETE", f"{API}/namespaces/team-a/trainjobs/adautomix-0123456789") in k8s.requests


def test_a_stopped_step_deletes_its_job(monkeypatch):
    """SIGTERM is what a cancelled run, a step timeout or an eviction sends the step's pod; the
    stand-in sends it at the job's third status read."""
    import os
    import signal

    def terminate(gets):
        if gets == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with StandInKubernetes([RUNNING], on_get=terminate) as k8s:
        with pytest.raises(
            TrainJobError, match="this step was stopped \\(SIGTERM.*the job is deleted"
        ):
            run(k8s)
    assert ("DELETE", f"{API}/namespaces/team-a/trainjobs/adautomix-0123456789") in k8s.requests
    assert signal.getsignal(signal.SIGTERM) is previous  # the step's own handling restored


def test_a_job_that_fails_by_itself_is_kept_for_its_logs():
    failed = {"conditions": [condition("Failed", "BackoffLimitExceeded", "exit 1")]}
    with StandInKubernetes([RUNNING, failed]) as k8s:
        with pytest.raises(TrainJobError, match="failed: BackoffLimitExceeded"):
            run(k8s)
    assert not any(method == "DELETE" for method, _ in k8s.requests)


def test_the_job_is_owned_by_the_step_s_pod_when_the_pod_can_be_read():
    with StandInKubernetes() as k8s:
        assert pod_owner(k8s.client, "team-a", "step-pod") == OWNER
    said = []
    with StandInKubernetes(pod_readable=False) as k8s:
        assert pod_owner(k8s.client, "team-a", "step-pod", say=said.append) is None
    assert "grant get on pods (deploy/rbac.yaml)" in said[0]


def test_the_shipped_rbac_lets_the_step_own_and_adopt_its_jobs():
    docs = shipped_rbac()
    for resource, group in (("trainjobs", "trainer.kubeflow.org"), ("pytorchjobs", "kubeflow.org")):
        assert "patch" in role_verbs(docs, resource, group)
    assert "get" in role_verbs(docs, "pods", "")


def test_the_compiled_job_options_reach_the_job_the_step_creates(monkeypatch):
    """From ClusterSettings through the step's JSON input to the API server: what
    pipeline/cluster_settings.py decides at compile time is what the created TrainJob carries."""
    from adautomix.cluster import pod as cluster_pod
    from adautomix.cluster.multinode import train_on_nodes
    from pipeline.cluster_settings import ClusterSettings
    from pipeline.cluster_tasks import job_options

    options = job_options(
        ClusterSettings(
            num_nodes=2, train_gpus=4, termination_grace=300, image_pull_secrets=("regcred",)
        )
    )
    monkeypatch.setenv("HOSTNAME", "step-pod")
    with StandInKubernetes([COMPLETE]) as k8s:
        monkeypatch.setattr(cluster_pod, "in_cluster_client", lambda: (k8s.client, "team-a"))
        name = train_on_nodes(
            f"{OUT}/config.json",
            OUT,
            4,
            TASK_CONFIG,
            options,
            "adautomix-training",
            "run-7f3a",
            say=lambda line: None,
            poll_interval=0.02,
        )
    created = k8s.created
    assert name == created["metadata"]["name"] == job_name("run-7f3a", OUT)
    assert created["metadata"]["labels"]["adautomix.dev/pipeline-run-id"] == "run-7f3a"
    assert created["metadata"]["ownerReferences"][0]["uid"] == "uid-step-pod"
    assert created["spec"]["trainer"]["resourcesPerNode"] == {
        "requests": {"cpu": "16", "memory": "80Gi"},
        "limits": {"cpu": "32", "memory": "144Gi", "nvidia.com/gpu": "4"},
    }
    template = node_pod(created)
    assert template["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["terminationGracePeriodSeconds"] == 300
