"""Dataset versions through DVC.

A version is DVC's hash of a prepared dataset folder: the `md5` of the .dvc file that tracks it,
such as `3b5e0c...91.dir`. `git log -p data.dvc` lists every version the project has tracked.

A workspace is a DVC repository: the project checkout on one machine; in a cluster, a folder on a
persistent volume that `materialise` seeds from the project's DVC files (the image sets
ADAUTOMIX_PROJECT). The version that the workspace's `data.dvc` (or `data/NAME.dvc`) tracks lives
in data/NAME, where `adautomix train` looks by default. Any other version is materialised beside
it, in data/.versions/HASH/NAME, from a .dvc file written there, so asking for an old version
never disturbs the checked-out one and needs no git history.

Where the data comes from: data already in place (prepared by hand, say) once its bytes are
checked against the version; else the workspace's DVC cache; else the remote (the DVC default
remote, or the one named). When no remote holds the tracked version of a dataset that can be
prepared here without a source (Fashion-MNIST) and the remote is a local folder, it is prepared
here, checked against the version, and pushed there, so the next workspace can pull it. Data with
other bytes than the version records is a hash mismatch, never silently used or overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from adautomix.data.dvc_adapter import (
    DvcFailure,
    DvcRepo,
    open_repo,
    quiet_libraries,
    remote_object,
)
from adautomix.data.errors import DataError
from adautomix.data.prepare import Manifest, prepare, verify
from adautomix.data.split import check_subset

log = logging.getLogger("adautomix.data")

TRACKING_FILE = "data.dvc"
VERSIONS = ".versions"
# Datasets that `prepare` can build with no source given, hence without any remote.
PREPARABLE = ("fashion-mnist",)


@dataclass(frozen=True)
class DataVersion:
    name: str
    version: str  # DVC's hash of the dataset folder
    data_root: Path  # holds NAME/, ready for `ensure_dataset(name, data_root)`
    manifest: Manifest
    remote_url: str = ""  # the DVC remote that holds the version


def normalise_version(version: str) -> str:
    """'' stays ''; a DVC directory hash gains its '.dir' suffix if it was left off."""
    version = version.strip()
    if not version:
        return ""
    if not re.fullmatch(r"[0-9a-f]{32}(\.dir)?", version):
        raise DataError(
            f"data version {version!r} is not a DVC hash: give the md5 of a .dvc file "
            "(32 hex digits, optionally ending in '.dir'), or leave it empty for the version "
            "data.dvc tracks"
        )
    return version if version.endswith(".dir") else version + ".dir"


def tracking_file(name: str, workspace: str | Path = ".") -> Path | None:
    """The workspace's .dvc file that tracks data/NAME: data.dvc or data/NAME.dvc, if any."""
    workspace = Path(workspace)
    for path in (workspace / TRACKING_FILE, workspace / "data" / f"{name}.dvc"):
        if (
            path.exists()
            and (path.parent / _read_out(path)["path"]).resolve()
            == (workspace / "data" / name).resolve()
        ):
            return path
    return None


def tracked_version(name: str, workspace: str | Path = ".") -> str:
    """The version of dataset `name` that the workspace's .dvc files track."""
    path = tracking_file(name, workspace)
    if path is None:
        raise DataError(
            f"no .dvc file in {Path(workspace).resolve()} tracks data/{name}: run `adautomix "
            f"data prepare {name} --source DIR`, `dvc add data/{name}` and `dvc push`, or pass "
            "a data version (a DVC hash) that a remote holds"
        )
    return normalise_version(_read_out(path)["md5"])


def materialise(
    name: str,
    version: str = "",
    workspace: str | Path = ".",
    remote: str | None = None,
    project: str | Path | None = None,
) -> DataVersion:
    """Make version `version` of dataset `name` present and verified in the workspace.

    `version` '' means the version the workspace tracks. `remote` '' or None is the DVC default
    remote. `project`, when given and different from the workspace, is where the DVC config and
    .dvc files are copied from first (a fresh persistent volume has none)."""
    workspace = Path(workspace).resolve()
    if project and Path(project).resolve() != workspace:
        init_workspace(workspace, project)
    if not (workspace / ".dvc" / "config").exists():
        raise DataError(
            f"{workspace} is not a DVC workspace (no .dvc/config); run it from the "
            "project checkout or pass the project to seed it from"
        )
    version = normalise_version(version) or tracked_version(name, workspace)
    dvc_file = _dvc_file_for(name, version, workspace)
    data_root = (dvc_file.parent / _read_out(dvc_file)["path"]).parent
    with open_repo(workspace) as repo:
        state = repo.output_state(dvc_file)
        pulled = state == "missing"
        if pulled:
            state = _fetch(repo, dvc_file, data_root, name, version, remote or None)
        if state == "modified":
            raise DataError(
                f"{data_root / name} differs from data version {version} that "
                f"{dvc_file.relative_to(workspace)} records (hash mismatch). Restore it with "
                f"`dvc checkout --force {dvc_file.relative_to(workspace)}`, or make it a new "
                "version with `dvc commit` and pass that version"
            )
        if state == "uncached":  # the right bytes, prepared by hand: keep them in the cache
            repo.commit(dvc_file)
        url = remote_url(repo, remote or None)
        try:
            manifest = verify(name, data_root)
        except DataError:
            if pulled:
                _refuse_corrupt_objects(repo, data_root / name, version, remote or None)
            raise
    return DataVersion(name, version, data_root, manifest, url)


def check_subset_fits(
    name: str, version: str, workspace: str | Path, subset: int, val_size: int
) -> None:
    """Refuse now, before anything runs, a training `subset` larger than version `version` of
    `name` has (less the validation split's `val_size`), where this workspace holds that
    version's manifest; elsewhere its train step finds it, as a run does."""
    counts = _known_counts(name, version, Path(workspace))
    if counts is not None and "train" in counts:
        train = int(counts["train"])
        check_subset(subset, train - val_size if val_size else train, f"{name}/train", val_size > 0)


def _known_counts(name: str, version: str, workspace: Path) -> dict | None:
    """The split sizes in the manifest of `version` of `name` in `workspace`, if it is there
    (data/NAME for the tracked version, data/.versions/HASH/NAME for another); nothing written."""
    tracked = tracking_file(name, workspace)
    if tracked is not None and normalise_version(_read_out(tracked)["md5"]) == version:
        folder = tracked.parent / _read_out(tracked)["path"]
    else:
        folder = workspace / "data" / VERSIONS / version / name
    try:
        return json.loads((folder / "manifest.json").read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remote_url(repo: DvcRepo, remote: str | None) -> str:
    """The URL of `remote` (None: the default one); DVC gives a local folder as an absolute path."""
    return str(repo.remote_settings(remote).get("url", ""))


def _refuse_corrupt_objects(repo: DvcRepo, data: Path, version: str, remote: str | None) -> None:
    """A DataError naming the remote's bad copies, when what was just pulled holds any. The
    manifest check has already failed; this tells where the bad bytes came from, because the
    usual advice (`dvc pull`, `dvc checkout`) would restore the same bytes from the cache."""
    bad = repo.bad_objects(version)
    if not bad:
        return
    url = remote_url(repo, remote)
    names = ", ".join(b.relpath or "its listing" for b in bad)
    evict = " ".join(str(b.cached) for b in bad)
    # With the version's listing in place, `dvc push` takes the whole folder as present there.
    replace = sorted({remote_object(url, b.md5) for b in bad} | {remote_object(url, version)})
    raise DataError(
        f"DVC remote {repo.remote_name(remote)!r} holds a corrupt copy of data version {version} "
        f"({names}: the bytes do not hash to their names), and `dvc pull` would restore the "
        f"same bytes from the cache. Evict them from this workspace's cache and data (`rm -rf "
        f"{evict} {data}`), delete {' and '.join(replace)} from the remote, and `dvc push` "
        "again from a workspace that holds the good data"
    )


def init_workspace(workspace: str | Path, project: str | Path) -> Path:
    """Make `workspace` a git-less DVC repository with the project's remotes and .dvc files.

    A relative (local) remote then resolves inside the workspace, so the workspace has its own.
    Re-running refreshes the config and .dvc files; data and cache already there are kept."""
    workspace, project = Path(workspace), Path(project)
    if not (project / ".dvc" / "config").exists():
        raise DataError(
            f"{project} has no .dvc/config to seed a DVC workspace from; point "
            "ADAUTOMIX_PROJECT at the project checkout"
        )
    (workspace / ".dvc").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project / ".dvc" / "config", workspace / ".dvc" / "config")
    (workspace / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    (workspace / "data").mkdir(exist_ok=True)
    for source in [project / TRACKING_FILE, *sorted((project / "data").glob("*.dvc"))]:
        if source.exists():
            shutil.copyfile(source, workspace / source.relative_to(project))
    return workspace


def check_credentials(repo: DvcRepo, remote: str | None) -> None:
    """Fail now, naming the variables, when an S3 remote has no credentials to use."""
    name = repo.remote_name(remote)
    settings = repo.remote_settings(remote)
    if not str(settings.get("url", "")).startswith("s3://") or settings.get("access_key_id"):
        return
    import boto3

    if boto3.Session().get_credentials() is None:
        raise DataError(
            f"DVC remote {name!r} ({settings['url']}) needs S3 credentials and none are set: "
            "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a cluster they come from the "
            "Kubernetes secret named in docs/cluster.md), and AWS_ENDPOINT_URL for a non-AWS S3"
        )


# How long the endpoint check waits for a connection: an endpoint that is up answers in
# milliseconds, and DVC's own retries would take half a minute to say less.
ENDPOINT_TIMEOUT = 5


def check_endpoint(repo: DvcRepo, remote: str | None) -> None:
    """Fail now, naming the endpoint and where it was set, when an S3 remote's endpoint does not
    answer: one request, no retries, instead of DVC's half-minute of retries and its tracebacks."""
    settings = repo.remote_settings(remote)
    url = str(settings.get("url", ""))
    if not url.startswith("s3://"):
        return
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError, ConnectionError as EndpointDown

    client = boto3.client(
        "s3",
        endpoint_url=settings.get("endpointurl") or None,
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=ENDPOINT_TIMEOUT,
            read_timeout=ENDPOINT_TIMEOUT,
        ),
    )
    try:
        client.head_bucket(Bucket=url[len("s3://") :].split("/")[0])
    except ClientError:  # it answered: DVC reports what it said (no bucket, no access)
        return
    except EndpointDown as error:
        cause = str(error.kwargs.get("error") or error)
        raise DataError(
            f"DVC remote {repo.remote_name(remote)!r} ({url}): the S3 endpoint "
            f"{client.meta.endpoint_url} cannot be reached ({cause.split('): ', 1)[-1]}). "
            f"Check {_endpoint_source(settings)}, and that the S3 service there is up"
        ) from None


def _endpoint_source(settings: dict) -> str:
    """Where the endpoint came from, for the user to fix."""
    if settings.get("endpointurl"):
        return "the remote's endpointurl (dvc remote modify --local NAME endpointurl URL)"
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return name
    return "the region (AWS_DEFAULT_REGION), or set AWS_ENDPOINT_URL for a non-AWS S3"


def _read_out(dvc_file: Path) -> dict:
    try:
        outs = yaml.safe_load(dvc_file.read_text())["outs"]
        return {"md5": outs[0]["md5"], "path": outs[0]["path"]}
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as error:
        raise DataError(
            f"{dvc_file} is not a .dvc file with one output ({error}); restore it from git"
        ) from None


def _dvc_file_for(name: str, version: str, workspace: Path) -> Path:
    tracked = tracking_file(name, workspace)
    if tracked is not None and normalise_version(_read_out(tracked)["md5"]) == version:
        return tracked
    folder = workspace / "data" / VERSIONS / version
    folder.mkdir(parents=True, exist_ok=True)
    dvc_file = folder / f"{name}.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": version, "hash": "md5", "path": name}]}))
    return dvc_file


def _fetch(
    repo: DvcRepo, dvc_file: Path, data_root: Path, name: str, version: str, remote: str | None
) -> str:
    """Pull the version; when no remote has it, prepare it here if that is possible. Returns
    the state of the data afterwards."""
    with quiet_libraries():  # their INFO lines and retries say nothing the checks do not
        check_credentials(repo, remote)
        check_endpoint(repo, remote)
    try:
        repo.pull(dvc_file, remote)
        return repo.output_state(dvc_file)
    except DvcFailure as error:
        tracked = dvc_file == tracking_file(name, repo.root)
        if not (tracked and name in PREPARABLE and _is_local(repo, remote)):
            raise DataError(
                f"data version {version} of {name} could not be pulled from DVC remote "
                f"{repo.remote_name(remote)!r} ({error}). "
                f"Push it from where it was prepared (`dvc push {TRACKING_FILE}`), or check the "
                "remote's endpoint and credentials"
            ) from None
    log.info("%s is in no DVC remote yet: preparing it here", name)
    prepare(name, data_root=data_root)
    state = repo.output_state(dvc_file)
    if state == "modified":
        raise DataError(
            f"{name} prepared here differs from data version {version} (hash mismatch): the raw "
            f"source or the prepare code changed. Record the new version with `dvc commit "
            f"{dvc_file.relative_to(repo.root)}`, or pass the version just prepared"
        )
    repo.commit(dvc_file)
    repo.push(dvc_file, remote)
    return "ok"


def _is_local(repo: DvcRepo, remote: str | None) -> bool:
    url = remote_url(repo, remote)
    return bool(url) and "://" not in url
