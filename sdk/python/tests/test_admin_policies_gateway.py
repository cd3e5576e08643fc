"""The SDK's ``admin.policies`` against the real gateway (not the contract
stub): create, list, get, update (PATCH, the fields given), delete; the
gateway's refusals surface as AIlinkError with the loader's message; a token
created through the API names the policy and the data plane obeys it."""

import uuid

import pytest

from sdktest import ADMIN_KEY

from ailink import AIlinkClient, AIlinkError, PolicyDeniedError


def _deny(path, reason):
    return [{"name": "r1",
             "when": {"field": "request.path", "op": "eq", "value": path},
             "then": {"deny": {"reason": reason}}}]


def test_policies_crud(gateway):
    admin = AIlinkClient.admin(admin_key=ADMIN_KEY, gateway_url=gateway.url)
    name = "sdk-policy-" + uuid.uuid4().hex[:8]

    created = admin.policies.create(name=name, mode="enforce", phase="pre",
                                    rules=_deny("/v1/sdk-denied", "not from the SDK"))
    assert created["name"] == name
    assert created["source"] == "api"

    assert name in [p["name"] for p in admin.policies.list()]
    assert admin.policies.get(name)["rules"][0]["then"]["deny"]["reason"] == "not from the SDK"

    token = admin.tokens.create(name="tok-" + name,
                                upstream_url="http://127.0.0.1:%d/api" % gateway.mock_port,
                                credential_id="action", policies=[name])
    client = AIlinkClient(api_key=token["token"], gateway_url=gateway.url)

    with pytest.raises(PolicyDeniedError) as exc:
        client.post("/v1/sdk-denied", json={})
    assert exc.value.policy_name == name
    assert exc.value.reason == "not from the SDK"

    updated = admin.policies.update(name, mode="shadow")
    assert updated["mode"] == "shadow"
    assert updated["rules"][0]["name"] == "r1"          # the fields not given are kept
    assert client.post("/v1/sdk-denied", json={}).status_code == 200

    # named by a token: the delete is refused, then allowed once it is not
    with pytest.raises(AIlinkError) as exc:
        admin.policies.delete(name)
    assert exc.value.status_code == 409
    admin._json("PATCH", "/tokens/" + token["id"], json={"policies": []})
    assert admin.policies.delete(name)["deleted"] is True
    assert name not in [p["name"] for p in admin.policies.list()]


def test_policies_refusals(gateway):
    admin = AIlinkClient.admin(admin_key=ADMIN_KEY, gateway_url=gateway.url)
    name = "sdk-bad-" + uuid.uuid4().hex[:8]

    with pytest.raises(AIlinkError) as exc:
        admin.policies.create(name=name, rules=[{
            "name": "broken", "when": {"field": "request.path", "op": "regex", "value": "(("},
            "then": "deny"}])
    assert exc.value.status_code == 400
    assert name in str(exc.value) and "broken" in str(exc.value)

    with pytest.raises(AIlinkError) as exc:
        admin.policies.update("no-such-policy-" + name, mode="shadow")
    assert exc.value.status_code == 404
