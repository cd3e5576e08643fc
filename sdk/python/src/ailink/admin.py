"""The admin API client (ARCHITECTURE.md §4.7): ``AIlinkClient.admin(admin_key=...)``."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

import httpx

from . import _base
from .errors import AIlinkError, error_from_response


class AdminClient:
    """JSON over ``/api/v1/`` with ``Authorization: Bearer ailink_admin_...``.

    Resources: ``tokens``, ``credentials``, ``services``, ``policies``,
    ``approvals``, ``audit``, ``spend``, ``config``, ``cache``. Every error
    answer raises the matching :class:`AIlinkError`."""

    def __init__(self, admin_key: Optional[str] = None, gateway_url: Optional[str] = None,
                 timeout: float = _base.DEFAULT_TIMEOUT, verify_ssl: bool = True) -> None:
        key = admin_key or os.environ.get("AILINK_ADMIN_KEY")
        if not key:
            raise AIlinkError("no admin_key given and AILINK_ADMIN_KEY is not set")
        self.gateway_url = _base.resolve_gateway_url(gateway_url)
        self.base_url = self.gateway_url + "/api/v1"
        self._http = httpx.Client(
            timeout=timeout, verify=verify_ssl,
            headers={"Authorization": "Bearer " + key, "User-Agent": _base.USER_AGENT,
                     "Accept": "application/json"})
        self.tokens = Tokens(self)
        self.credentials = Credentials(self)
        self.services = Services(self)
        self.policies = Policies(self)
        self.approvals = Approvals(self)
        self.audit = Audit(self)
        self.spend = Spend(self)
        self.config = Config(self)
        self.cache = Cache(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: Optional[Mapping[str, Any]] = None, content: Any = None,
                headers: Optional[Mapping[str, str]] = None) -> httpx.Response:
        """One admin request; an error status raises."""
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            r = self._http.request(method, self.base_url + path, json=json, params=params or None,
                                   content=content, headers=headers)
        except httpx.TransportError as exc:
            raise _base.transport_error(exc, self.gateway_url) from exc
        if r.status_code >= 400:
            raise error_from_response(r)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text


def _items(data: Any) -> List[Dict[str, Any]]:
    """A list answer: a bare array, or ``{"data": [...]}`` / ``{"items": [...]}``."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for k in ("data", "items", "results"):
            if isinstance(data.get(k), list):
                return list(data[k])
    return []


class _Resource:
    path = ""

    def __init__(self, admin: AdminClient) -> None:
        self._admin = admin


class _Crud(_Resource):
    def create(self, **fields: Any) -> Dict[str, Any]:
        return self._admin._json("POST", self.path, json=fields)

    def list(self, **filters: Any) -> List[Dict[str, Any]]:
        return _items(self._admin._json("GET", self.path, params=filters))

    def get(self, id: str) -> Dict[str, Any]:
        return self._admin._json("GET", "%s/%s" % (self.path, id))

    def delete(self, id: str) -> Any:
        return self._admin._json("DELETE", "%s/%s" % (self.path, id))


class Tokens(_Crud):
    """``/tokens``: create (the token is returned once), list, get, revoke; circuit breakers."""

    path = "/tokens"

    def create(self, name: str, **fields: Any) -> Dict[str, Any]:  # type: ignore[override]
        """Fields as the gateway takes them (``project``, ``upstream_url``,
        ``credential_id``, ``circuit_breaker``...); the answer's ``id`` is also
        given as ``token_id``."""
        out = self._admin._json("POST", self.path, json=dict(name=name, **fields))
        if isinstance(out, dict) and "id" in out:
            out.setdefault("token_id", out["id"])
        return out

    def revoke(self, token_id: str) -> Any:
        return self._admin._json("DELETE", "%s/%s" % (self.path, token_id))

    def get_circuit_breaker(self, token_id: str) -> Dict[str, Any]:
        return self._admin._json("GET", "%s/%s/circuit-breaker" % (self.path, token_id))

    def set_circuit_breaker(self, token_id: str, *, enabled: Optional[bool] = None,
                            failure_threshold: Optional[int] = None,
                            recovery_cooldown_secs: Optional[int] = None,
                            half_open_max_requests: Optional[int] = None) -> Dict[str, Any]:
        """PATCH semantics: only the fields given are sent and changed."""
        body = {k: v for k, v in dict(
            enabled=enabled, failure_threshold=failure_threshold,
            recovery_cooldown_secs=recovery_cooldown_secs,
            half_open_max_requests=half_open_max_requests).items() if v is not None}
        return self._admin._json("PATCH", "%s/%s/circuit-breaker" % (self.path, token_id),
                                 json=body)

    def upstream_health(self) -> Any:
        """``GET /health/upstreams``: per upstream, state, failures, cooldown remaining."""
        data = self._admin._json("GET", "/health/upstreams")
        return data


class Credentials(_Crud):
    """``/credentials``: the secret is write-only; list gives metadata."""

    path = "/credentials"

    def create(self, name: str, secret: str, **fields: Any) -> Dict[str, Any]:  # type: ignore[override]
        return self._admin._json("POST", self.path, json=dict(name=name, secret=secret, **fields))


class Services(_Crud):
    """``/services``: ``{name, base_url, service_type, credential_id}``."""

    path = "/services"

    def create(self, name: str, base_url: str, service_type: str = "generic",  # type: ignore[override]
               credential_id: Optional[str] = None, **fields: Any) -> Dict[str, Any]:
        body = dict(name=name, base_url=base_url, service_type=service_type, **fields)
        if credential_id is not None:
            body["credential_id"] = credential_id
        return self._admin._json("POST", self.path, json=body)


class Policies(_Crud):
    """``/policies``: create, list, get, update, delete.

    A policy is the config file's shape: ``name``, ``mode`` (``enforce`` |
    ``shadow``), ``phase`` (``pre`` | ``post``), ``apply_to`` (``"all"`` or
    ``{"tokens": [...], "projects": [...]}``), ``timezone``, ``description``
    and ``rules`` (``[{"name", "when", "then"}]``). ``update`` replaces the
    fields given (``None`` removes one); the policies of the config file are
    read-only (409)."""

    path = "/policies"

    def create(self, name: str, rules: Any = None,  # type: ignore[override]
               **fields: Any) -> Dict[str, Any]:
        body = dict(name=name, **fields)
        if rules is not None:
            body["rules"] = rules
        return self._admin._json("POST", self.path, json=body)

    def update(self, name: str, **fields: Any) -> Dict[str, Any]:
        return self._admin._json("PATCH", "%s/%s" % (self.path, name), json=fields)


class Approvals(_Resource):
    """``/approvals``: list (by status), approve, reject."""

    path = "/approvals"

    def list(self, status: Optional[str] = None, **filters: Any) -> List[Dict[str, Any]]:
        return _items(self._admin._json("GET", self.path, params=dict(status=status, **filters)))

    def get(self, approval_id: str) -> Dict[str, Any]:
        return self._admin._json("GET", "%s/%s" % (self.path, approval_id))

    def decide(self, approval_id: str, decision: str, reason: Optional[str] = None) -> Any:
        body: Dict[str, Any] = {"decision": decision}
        if reason is not None:
            body["reason"] = reason
        return self._admin._json("POST", "%s/%s/decision" % (self.path, approval_id), json=body)

    def approve(self, approval_id: str, reason: Optional[str] = None) -> Any:
        return self.decide(approval_id, "approve", reason)

    def reject(self, approval_id: str, reason: Optional[str] = None) -> Any:
        return self.decide(approval_id, "reject", reason)


class Audit(_Resource):
    """``/audit``: query by token, agent, session, time range."""

    path = "/audit"

    def query(self, *, token_id: Optional[str] = None, agent_name: Optional[str] = None,
              session_id: Optional[str] = None, since: Optional[str] = None,
              until: Optional[str] = None, limit: Optional[int] = None,
              **filters: Any) -> List[Dict[str, Any]]:
        params = dict(token_id=token_id, agent_name=agent_name, session_id=session_id,
                      since=since, until=until, limit=limit, **filters)
        return _items(self._admin._json("GET", self.path, params=params))

    list = query


class Spend(_Resource):
    """``GET /spend``: totals (requests, prompt_tokens, completion_tokens,
    cost_usd) grouped by ``token``, ``project``, ``model`` or ``day``, for
    ``since``/``until`` (RFC 3339 prefixes) and a ``token_id``, ``project``
    or ``model``.  ``admin.spend(group_by="model")`` is ``admin.spend.get(...)``."""

    path = "/spend"

    def get(self, *, group_by: Optional[str] = None, since: Optional[str] = None,
            until: Optional[str] = None, token_id: Optional[str] = None,
            project: Optional[str] = None, model: Optional[str] = None,
            **filters: Any) -> Any:
        params = dict(group_by=group_by, since=since, until=until, token_id=token_id,
                      project=project, model=model, **filters)
        return self._admin._json("GET", self.path, params=params)

    query = get
    __call__ = get


class Config(_Resource):
    """Config as code: ``export()`` gives YAML text, ``import_yaml(text)`` upserts it."""

    def export(self) -> str:
        return self._admin.request("GET", "/config/export",
                                   headers={"Accept": "application/yaml"}).text

    def import_yaml(self, yaml_text: str, dry_run: bool = False) -> Any:
        r = self._admin.request("POST", "/config/import", content=yaml_text.encode("utf-8"),
                                params={"dry_run": "true"} if dry_run else None,
                                headers={"Content-Type": "application/yaml"})
        try:
            return r.json() if r.content else None
        except ValueError:
            return r.text


class Cache(_Resource):
    """``/cache``: flush, stats."""

    def flush(self) -> Any:
        return self._admin._json("POST", "/cache/flush")

    def stats(self) -> Any:
        return self._admin._json("GET", "/cache/stats")
