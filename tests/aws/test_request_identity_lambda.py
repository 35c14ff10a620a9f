"""Request identity through Lambda: handler functions that require the runtime's key.

Both SDKs (official restate-sdk and ours) run as Lambda functions behind the local Invoke
endpoint with ``identity_keys`` set; the runtime reaches them with the real boto3 client.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.local_lambda import LambdaHandler, LocalLambda
from infra.testing import test_environment as make_environment
from invoker.api import BadRequestError
from invoker.lambda_transport import LambdaTransport
from invoker.request_identity import RequestSigner, generate_pem
from tests.aws import handlers

SIGNER = RequestSigner.from_pem(generate_pem())


def _official() -> LambdaHandler:
    import restate
    from restate.aws_lambda import wrap_asgi_as_lambda_handler

    app = restate.app(handlers.SDK_SERVICES, identity_keys=[SIGNER.public_key])
    handler: LambdaHandler = wrap_asgi_as_lambda_handler(app)
    return handler


def _ours() -> LambdaHandler:
    import restate_lambda

    app: Any = restate_lambda.app(handlers.OURS_SERVICES, identity_keys=[SIGNER.public_key])
    handler: LambdaHandler = app.lambda_handler
    return handler


@pytest.mark.parametrize("factory", [_official, _ours], ids=["sdk", "ours"])
async def test_lambda_deployments_accept_only_signed_requests(
    local_lambda: LocalLambda, factory: Any
) -> None:
    name = f"signed-{factory.__name__.strip('_')}"
    local_lambda.add_function(name, factory)
    arn = local_lambda.arn(name, "1")
    async with make_environment() as env:
        env.engine.transports.lambda_ = LambdaTransport(endpoint_url=local_lambda.endpoint_url)
        with pytest.raises(BadRequestError, match="401"):
            await env.engine.register_deployment(arn=arn)
        env.engine.transports.signer = SIGNER
        await env.engine.register_deployment(arn=arn)
        r = await env.ingress.post("/Greeter/greet", json="Lambda")
        assert r.status_code == 200, r.text
        assert r.json() == "Hello, Lambda!"
