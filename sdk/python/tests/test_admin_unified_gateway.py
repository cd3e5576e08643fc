"""The admin API's whole surface under one location, through the SDK's admin
client against the real gateway: approvals, cache, upstream health and spend
(issue 13).  Each of these was a 404 before the admin API mounted them."""

from sdktest import ADMIN_KEY, LLM_TOKEN, mock_reply

from ailink import AIlinkClient


def test_approvals_cache_health_through_the_admin_api(gateway):
    admin = AIlinkClient.admin(admin_key=ADMIN_KEY, gateway_url=gateway.url)

    assert admin.approvals.list(status="pending") == [] or \
        all(a["status"] == "pending" for a in admin.approvals.list(status="pending"))

    before = admin.cache.stats()
    assert "hits" in before and "flushes" in before
    after = admin.cache.flush()
    assert after["flushes"] == before["flushes"] + 1

    health = admin.tokens.upstream_health()
    assert isinstance(health["upstreams"], list) and health["upstreams"]
    assert {"name", "state", "failures"} <= set(health["upstreams"][0])


def test_spend_by_token_and_model(gateway):
    admin = AIlinkClient.admin(admin_key=ADMIN_KEY, gateway_url=gateway.url)
    client = AIlinkClient(api_key=LLM_TOKEN, gateway_url=gateway.url)

    def llm_requests(spend):
        return sum(g["requests"] for g in spend["data"])

    n = len(gateway.audit_records())
    base = llm_requests(admin.spend(group_by="token", token_id="tok_llm"))

    for text in ("spend one", "spend two"):
        r = client.openai().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        assert r.choices[0].message.content == mock_reply(text)
    gateway.wait_audit(n + 2)

    by_token = admin.spend(group_by="token", token_id="tok_llm")
    assert by_token["group_by"] == "token_id"
    assert [g["token_id"] for g in by_token["data"]] == ["tok_llm"]
    assert llm_requests(by_token) == base + 2
    assert by_token["data"][0]["prompt_tokens"] > 0

    by_model = admin.spend.get(group_by="model", token_id="tok_llm")
    assert any(g["model"] and g["model"].startswith("gpt-4o-mini") for g in by_model["data"])
    assert by_model["total"]["requests"] == llm_requests(by_token)

    assert admin.spend(since="2999-01-01")["data"] == []
