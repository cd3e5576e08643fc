"""The admin API driven with plain httpx (ARCHITECTURE.md 4.7): keys,
a token created and used on the data plane, revoked; a vault credential
(write-only); a service and /v1/proxy/services/<name>/...; errors in the
contract's envelope.  The session gateway mounts the admin API on
/api/v1/ with the admin key of gateway.ADMIN_KEY.
"""

import httpx

from gateway import ADMIN_KEY, LLM_TOKEN


def admin(gateway):
    return httpx.Client(base_url=gateway.url + "/api/v1", timeout=10,
                        headers={"Authorization": "Bearer " + ADMIN_KEY})


def test_admin_keys(gateway):
    r = httpx.get(gateway.url + "/api/v1/tokens")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_token"
    r = httpx.get(gateway.url + "/api/v1/tokens",
                  headers={"Authorization": "Bearer " + LLM_TOKEN})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"


def test_token_lifecycle(gateway):
    with admin(gateway) as a:
        r = a.post("/tokens", json={
            "name": "e2e-httpx", "project": "e2e",
            "upstream_url": "http://127.0.0.1:%d/api" % gateway.mock_port,
            "credential_id": "action"})
        assert r.status_code == 201, r.text
        created = r.json()
        token, tid = created["token"], created["id"]
        assert token.startswith("ailink_v1_proj_e2e_tok_")

        data = httpx.post(gateway.url + "/v1/orders", json={"n": 1},
                          headers={"Authorization": "Bearer " + token})
        assert data.status_code == 200
        assert data.json()["echo"]["path"] == "/api/v1/orders"

        listed = a.get("/tokens").json()["data"]
        assert any(t["id"] == tid and t["source"] == "api" for t in listed)
        assert all("token" not in t and "hash" not in t for t in listed)

        assert a.patch("/tokens/" + tid, json={"name": "e2e-renamed"}).json()["name"] \
            == "e2e-renamed"
        assert a.delete("/tokens/" + tid).json()["revoked"] is True

        data = httpx.post(gateway.url + "/v1/orders", json={},
                          headers={"Authorization": "Bearer " + token})
        assert data.status_code == 401

        r = a.patch("/tokens/tok_action", json={"name": "x"})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "conflict"


def test_vault_and_services(gateway):
    with admin(gateway) as a:
        r = a.post("/credentials", json={"name": "e2e-vault", "secret": "e2e-secret-42",
                                         "scheme": "header", "header": "X-Api-Key"})
        assert r.status_code == 201, r.text
        assert "secret" not in r.json()
        assert all("secret" not in c for c in a.get("/credentials").json()["data"])

        r = a.post("/services", json={
            "name": "e2e-svc", "base_url": "http://127.0.0.1:%d/svc" % gateway.mock_port,
            "service_type": "generic", "credential_id": "e2e-vault"})
        assert r.status_code == 201, r.text

        r = httpx.get(gateway.url + "/v1/proxy/services/e2e-svc/items?x=1",
                      headers={"Authorization": "Bearer " + LLM_TOKEN})
        assert r.status_code == 200
        echo = r.json()["echo"]
        assert echo["path"] == "/svc/items"
        assert echo["headers"]["x-api-key"] == "e2e-secret-42"

        assert a.delete("/credentials/e2e-vault").status_code == 409
        assert a.delete("/services/e2e-svc").status_code == 200
        assert a.delete("/credentials/e2e-vault").status_code == 200

        r = a.post("/tokens", content=b"{not json")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_request"
