"""Acting as a ServiceAccount: a client whose only credential is a bound token from the TokenRequest API."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.errors import VerificationFailed


def service_account_client(
    api: client.ApiClient, namespace: str, name: str, *, expiration_s: int = 600
) -> client.ApiClient:
    """A new ApiClient that authenticates as ``system:serviceaccount:<namespace>:<name>``."""
    core = client.CoreV1Api(api)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_s)
    )
    status = core.create_namespaced_service_account_token(name, namespace, request).status
    if status is None or not status.token:
        raise VerificationFailed(f"the API server issued no token for ServiceAccount {namespace}/{name}")
    token = status.token
    configuration = client.Configuration()
    configuration.host = api.configuration.host
    configuration.ssl_ca_cert = api.configuration.ssl_ca_cert
    configuration.verify_ssl = api.configuration.verify_ssl
    configuration.api_key = {"authorization": str(token)}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def forbidden_status(call: object) -> int:
    """Run ``call()`` and return the HTTP status of the API's refusal; fail if it was allowed."""
    try:
        call()  # type: ignore[operator]
    except ApiException as exc:
        return int(exc.status)
    raise VerificationFailed("the API server allowed a call that should have been denied")
