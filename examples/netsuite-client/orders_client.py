"""A small NetSuite client, the kind a library ships: TBA-signed requests with
requests-oauthlib, retried when the account's concurrency limit is reached."""

from __future__ import annotations

import time
from typing import Any

import requests
from requests_oauthlib import OAuth1

MAX_ATTEMPTS = 15


class OrdersClient:
    def __init__(
        self,
        base_url: str,
        account: str,
        consumer_key: str,
        consumer_secret: str,
        token_id: str,
        token_secret: str,
    ) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.auth = OAuth1(
            consumer_key,
            consumer_secret,
            token_id,
            token_secret,
            signature_method="HMAC-SHA256",
            realm=account,
        )
        self.retries = 0

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request, retried after `Retry-After` while the account is at its limit: a RESTlet
        answers 400 SSS_REQUEST_LIMIT_EXCEEDED, REST web services 429."""
        for _ in range(MAX_ATTEMPTS):
            response = self.session.request(method, self.base_url + path, **kwargs)
            if not over_limit(response):
                return response
            self.retries += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
        raise RuntimeError(f"{method} {path}: still over the limit after {MAX_ATTEMPTS} tries")


def over_limit(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 400:
        return False
    error = response.json().get("error", {})
    return bool(error.get("code") == "SSS_REQUEST_LIMIT_EXCEEDED")
