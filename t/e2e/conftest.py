"""End-to-end fixtures: the mock provider and a real nginx with the AILink module.

    python3 -m pip install openai pytest
    npm ci --prefix t/e2e            # for test_openai_node.py
    python3 -m pytest -q t/e2e

One session fixture, ``gateway``, starts (as direct children of the pytest
process, so they are waited for and never left as orphans):

* t/mock/mock_provider.py on a free port (it plays OpenAI), and
* /usr/sbin/nginx (or $TEST_NGINX_BINARY) with build/release/ngx_ailink_module.so
  (or $AILINK_E2E_MODULE), serving t/conf/ailink.yaml on another free port,
  with the location set-up of t/lib/AILink/Test.pm and conf-examples/.

Both are stopped at the end of the session (nginx with SIGQUIT, the mock with
SIGTERM) and waited for.  Their files live in a pytest temporary directory:
nginx.conf, logs/error.log, logs/audit.jsonl, mock.log.
"""

import pytest

# the machinery lives in gateway.py, shared with sdk/python/tests
from gateway import (BOGUS_TOKEN, LLM_TOKEN, REPO, UPSTREAM_KEYS,  # noqa: F401 (for the tests)
                     Gateway, free_port, mock_reply, run_gateway)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    with run_gateway(tmp_path_factory.mktemp("ailink-e2e")) as gw:
        yield gw
