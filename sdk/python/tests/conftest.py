"""Fixtures of the SDK tests.

* ``gateway`` (session): the real gateway — nginx with build/release/ngx_ailink_module.so
  and the project's mock provider behind it — started by t/e2e/gateway.py, the
  same machinery as the end-to-end tests.  ``$AILINK_GATEWAY_URL`` points at it,
  so the seed examples that name no URL reach it; ``$OPENAI_API_KEY`` and
  ``$OPENAI_BASE_URL`` point the seed's fallback ``openai.OpenAI`` straight at
  the mock provider (the "direct to the provider" path).
* ``restartable`` (module): a gateway of its own that a test may stop and start.
* ``stub`` (session): a small local HTTP server answering what the contract
  (ARCHITECTURE.md §4) documents for features the gateway does not have yet
  (policies, approvals, admin API...).  Tests using it are *contract tests of
  the SDK*, not of the gateway; their files are named test_contract_*.py.
"""

import os

import pytest

from sdktest import Stub, gwlib


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    with gwlib.run_gateway(tmp_path_factory.mktemp("ailink-sdk")) as gw:
        saved = {k: os.environ.get(k) for k in
                 ("AILINK_GATEWAY_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
        os.environ["AILINK_GATEWAY_URL"] = gw.url
        os.environ["OPENAI_API_KEY"] = gw.upstream_keys["AILINK_TEST_OPENAI_KEY"]
        os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:%d/v1" % gw.mock_port
        try:
            yield gw
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def restartable(tmp_path_factory):
    with gwlib.run_gateway(tmp_path_factory.mktemp("ailink-restart")) as gw:
        yield gw
        if gw.nginx is None or gw.nginx.poll() is not None:
            gw.start_nginx()       # leave it running for run_gateway's own checks


@pytest.fixture(scope="session")
def _stub_server():
    s = Stub()
    yield s
    s.close()


@pytest.fixture
def stub(_stub_server):
    _stub_server.reset()
    yield _stub_server
    _stub_server.reset()


