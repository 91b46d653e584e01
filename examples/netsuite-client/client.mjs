// A JavaScript NetSuite client (oauth-1.0a, Node's crypto and fetch) against `tba-guard sandbox`:
// a RESTlet GET, a REST POST with a JSON body, and a burst past the concurrency limit, retried
// after Retry-After as NetSuite asks. Usage: node client.mjs credentials.json
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import OAuth from "oauth-1.0a";

const sandbox = JSON.parse(readFileSync(process.argv[2], "utf8"));
const oauth = OAuth({
  consumer: { key: sandbox.consumer_key, secret: sandbox.consumer_secret },
  signature_method: "HMAC-SHA256",
  realm: sandbox.account,
  hash_function: (base, key) => crypto.createHmac("sha256", key).update(base).digest("base64"),
});
const token = { key: sandbox.token_id, secret: sandbox.token_secret };

// Over the limit a RESTlet answers 400 SSS_REQUEST_LIMIT_EXCEEDED and REST web services 429.
async function isOverLimit(response) {
  if (response.status === 429) return true;
  if (response.status !== 400) return false;
  const body = await response.clone().json();
  return body.error?.code === "SSS_REQUEST_LIMIT_EXCEEDED";
}

let retries = 0;
async function call(method, url, body) {
  for (let attempt = 0; attempt < 15; attempt++) {
    // Signed afresh for every attempt: a nonce is good for one request only.
    const headers = oauth.toHeader(oauth.authorize({ url, method }, token));
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, body });
    if (!(await isOverLimit(response))) return response;
    retries++;
    const wait = Number(response.headers.get("retry-after") ?? "1");
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
  throw new Error(`${method} ${url}: still over the limit after 15 attempts`);
}

const restlet = await call("GET", `${sandbox.base_url}/app/site/hosting/restlet.nl?script=7&deploy=1`);
const created = await call(
  "POST",
  `${sandbox.base_url}/services/rest/record/v1/customer`,
  JSON.stringify({ companyName: "Wolfe Electronics" }),
);
// Twice the account's limit at once, each held for a second: some must wait their turn.
const burst = await Promise.all(
  Array.from({ length: sandbox.governance_limit * 2 }, () =>
    call("GET", `${sandbox.base_url}/services/rest/record/v1/customer/1?delay=1`),
  ),
);
console.log(
  JSON.stringify({
    restlet: restlet.status,
    created: created.status,
    created_body_bytes: (await created.json()).body_bytes,
    burst: burst.map((response) => response.status),
    retries,
  }),
);
