"""How `submit` authenticates to Kubeflow Pipelines.

A single-user install needs nothing. A multi-user one (Kubeflow profiles) needs a bearer token of
an identity that may edit pipelines in the user's profile namespace, and that namespace. They come
from the environment or a file, never from the command line (where `ps` and shell history would
show them), and are never printed:
  KF_PIPELINES_TOKEN        a token, e.g. `kubectl -n NS create token adautomix-submitter
                            --audience pipelines.kubeflow.org` (deploy/kfp-submitter.yaml)
  KF_PIPELINES_TOKEN_FILE   a file holding one (a CI secret mounted as a file)
  KF_PIPELINES_SA_TOKEN_PATH  kfp's own: a projected service-account token inside a pod
                            (default /var/run/secrets/kubeflow/pipelines/token when it exists)
  KF_PIPELINES_NAMESPACE    the profile namespace (or --namespace)"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

TOKEN_ENV = "KF_PIPELINES_TOKEN"
TOKEN_FILE_ENV = "KF_PIPELINES_TOKEN_FILE"
NAMESPACE_ENV = "KF_PIPELINES_NAMESPACE"
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client.KF_PIPELINES_SA_TOKEN_ENV
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

HOW_TO_AUTHENTICATE = (
    f"set {TOKEN_ENV} to a token (kubectl -n NAMESPACE create token "
    "adautomix-submitter --audience pipelines.kubeflow.org) or "
    f"{TOKEN_FILE_ENV} to a file holding one, and {NAMESPACE_ENV} (or "
    "--namespace) to your profile namespace"
)


class CredentialsError(ValueError):
    """A credential source is named but unusable; says which and why, never its content."""


@dataclass(frozen=True)
class KfpAuth:
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)
    token_path: str | None = None  # a service-account token file kfp re-reads
    source: str = ""  # where the credentials came from, for messages

    def client_arguments(self) -> dict:
        """Keyword arguments of kfp.Client."""
        arguments = {"namespace": self.namespace}
        if self.token:
            arguments["existing_token"] = self.token
        elif self.token_path:
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            arguments["credentials"] = ServiceAccountTokenVolumeCredentials(self.token_path)
        return arguments

    def redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


def resolve(namespace: str | None = None, environ: Mapping[str, str] = os.environ) -> KfpAuth:
    """The credentials the environment names, in order: a token file, a token, a service-account
    token; none is a valid answer (single-user installs)."""
    namespace = namespace or environ.get(NAMESPACE_ENV) or None
    if environ.get(TOKEN_FILE_ENV):
        path = Path(environ[TOKEN_FILE_ENV])
        try:
            token = path.read_text().strip()
        except OSError as error:
            raise CredentialsError(
                f"{TOKEN_FILE_ENV} names {path}, which cannot be read ({error.strerror})"
            ) from None
        if not token:
            raise CredentialsError(f"{TOKEN_FILE_ENV} names {path}, which is empty")
        return KfpAuth(namespace, token=token, source=f"{TOKEN_FILE_ENV} ({path})")
    if environ.get(TOKEN_ENV, "").strip():
        return KfpAuth(namespace, token=environ[TOKEN_ENV].strip(), source=TOKEN_ENV)
    sa_path = environ.get(SA_TOKEN_ENV) or (SA_TOKEN_PATH if Path(SA_TOKEN_PATH).exists() else "")
    if sa_path:
        if not Path(sa_path).is_file():
            raise CredentialsError(f"{SA_TOKEN_ENV} names {sa_path}, which does not exist")
        return KfpAuth(namespace, token_path=sa_path, source=f"service-account token {sa_path}")
    return KfpAuth(namespace)


def refusal(host: str, auth: KfpAuth, status: int | None, message: str) -> str | None:
    """What to tell the user when the endpoint refused for want of (valid) credentials; None
    when the failure is not about them."""
    lowered = message.lower()
    unauthenticated = status in (401, 403) or any(
        hint in lowered
        for hint in (
            "unauthenticated",
            "user identity",
            "permissiondenied",
            "forbidden",
            "dex",
            "oauth",
            "/login",
            "sign in",
        )
    )
    if not auth.source and unauthenticated:
        return (
            f"Kubeflow Pipelines at {host} asks for credentials (a multi-user install): "
            f"{HOW_TO_AUTHENTICATE}"
        )
    if unauthenticated:
        return (
            f"Kubeflow Pipelines at {host} refused the credentials from {auth.source}"
            f"{f' (HTTP {status})' if status else ''}: check that the token has not expired "
            f"and that its identity may edit pipelines in namespace "
            f"{auth.namespace or '(none given)'}"
        )
    if not auth.namespace and "namespace" in lowered:
        return (
            f"Kubeflow Pipelines at {host} is a multi-user install and needs a namespace: set "
            f"{NAMESPACE_ENV} (or --namespace) to your profile namespace"
        )
    return None
