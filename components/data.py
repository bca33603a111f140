"""The data step: one DVC version of a dataset, present and verified in the workspace."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def data(
    dataset: str,
    data_version: str,
    workspace: str,
    remote: str,
    prepared: Output[Dataset],
    workspace_volume: str = "",
) -> str:
    """Materialise `data_version` of `dataset` in the workspace (pulled from the DVC remote, or
    prepared here when the remote is local and lacks it). The artifact holds the manifest; its
    metadata the DVC hash, the content hash and where the data lives. Returns the DVC hash.

    `workspace_volume` names the workspace's claim: Kubeflow Pipelines keys a step's cache by
    its inputs, not by the volumes it mounts, so without it a run on another claim would reuse a
    result whose data is on a volume it cannot see."""
    import json
    import os

    from adautomix.errors import exit_on_error
    from adautomix.data.versioning import materialise

    with exit_on_error():  # one line and exit status 2 or 1, as from the CLI
        found = materialise(
            dataset,
            data_version,
            workspace,
            remote or None,
            project=os.environ.get("ADAUTOMIX_PROJECT"),
        )
    with open(prepared.path, "w") as f:
        json.dump(found.manifest.to_dict(), f, indent=2, sort_keys=True)
    prepared.metadata.update(
        dataset=dataset,
        data_version=found.version,
        sha256=found.manifest.sha256,
        data_root=str(found.data_root),
        remote_url=found.remote_url,
        workspace_volume=workspace_volume,
    )
    return found.version
