"""The client's tests against a NetSuite-like account: `netsuite_sandbox` comes from the
tba_guard.sandbox pytest plugin, no NetSuite account needed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from orders_client import OrdersClient

RESTLET = "/app/site/hosting/restlet.nl?script=7&deploy=1"
CUSTOMER = "/services/rest/record/v1/customer"


@pytest.fixture
def client(netsuite_sandbox):
    sandbox = netsuite_sandbox
    return OrdersClient(
        sandbox.base_url,
        sandbox.account,
        sandbox.consumer_key,
        sandbox.consumer_secret,
        sandbox.token_id,
        sandbox.token_secret,
    )


def test_a_restlet_answers_the_signed_request(client, netsuite_sandbox):
    response = client.call("GET", RESTLET)
    assert response.status_code == 200
    assert response.json()["consumer_key"] == netsuite_sandbox.consumer_key


def test_a_rest_post_carries_its_json_body(client):
    response = client.call("POST", CUSTOMER, json={"companyName": "Wolfe Electronics"})
    assert response.status_code == 200
    assert response.json()["body_bytes"] > 0


def test_a_wrong_secret_is_refused(netsuite_sandbox):
    sandbox = netsuite_sandbox
    wrong = OrdersClient(
        sandbox.base_url,
        sandbox.account,
        sandbox.consumer_key,
        "not-the-consumer-secret",
        sandbox.token_id,
        sandbox.token_secret,
    )
    response = wrong.call("GET", RESTLET)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidSignature"


def test_a_burst_past_the_limit_is_retried_until_every_request_is_served(client, netsuite_sandbox):
    burst = netsuite_sandbox.governance_limit * 2
    with ThreadPoolExecutor(burst) as pool:
        calls = [pool.submit(client.call, "GET", CUSTOMER + "/1?delay=1") for _ in range(burst)]
        answers = [call.result() for call in calls]
    assert [answer.status_code for answer in answers] == [200] * burst
    assert client.retries > 0  # some waited their turn
