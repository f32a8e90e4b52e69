// OAuth end to end, in a real browser: the TypeScript MCP SDK's OAuth client discovers
// `serve --transport http --oauth`, registers (dynamic registration), hands the
// authorization URL to Chromium, where Playwright signs in with the account key and
// ticks the choices on the consent page; the SDK exchanges the code and calls inside
// the grant, is refused outside it, refreshes, and is cut by a revocation. A second
// client names itself by a client metadata document (its id is the document's URL),
// through the same pages.
//
// Usage: node oauth_browser.mjs MCP_URL ACCOUNT_KEY REPO OTHER_REPO
// Environment: CHROMIUM (default /usr/bin/chromium).

import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [mcpUrl, accountKey, repo, otherRepo] = process.argv.slice(2);
const base = new URL(mcpUrl).origin;

function fail(message) {
  console.error(`oauth e2e: ${message}`);
  process.exit(1);
}

// The client's own little server: the redirect target, and the metadata document.
const callbacks = [];
let metadataDoc = null;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname === "/callback") {
    callbacks.push(url);
    res.writeHead(200, { "content-type": "text/plain" }).end("signed in; you may close this page");
  } else if (url.pathname === "/client.json" && metadataDoc) {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(metadataDoc));
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const here = `http://127.0.0.1:${server.address().port}`;
const redirectUrl = `${here}/callback`;

class Provider {
  constructor(name) {
    this.name = name;
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.authorizationUrl = undefined;
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: this.name,
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

// Sign in and consent in the browser; answers the code the redirect carried.
async function consentInBrowser(authorizationUrl, { repos, access }) {
  const page = await browser.newPage();
  const seen = callbacks.length;
  await page.goto(authorizationUrl.toString());
  if (!(await page.content()).includes("Account key")) fail("no sign-in page");
  await page.fill("input[name=key]", accountKey);
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=csrf]", { state: "attached", timeout: 5000 }).catch(async () => fail(`no consent page at ${page.url()}: ${(await page.content()).slice(0, 1500)}`));
  const html = await page.content();
  if (!html.includes("Nothing here verifies")) fail("the consent page does not warn that nothing verifies the client");
  for (const r of repos) await page.check(`input[name=repo][value="${r}"]`);
  await page.check(`input[name=access][value="${access}"]`);
  await Promise.all([page.waitForURL(/\/callback\?/), page.click("button[value=allow]")]);
  await page.close();
  const back = callbacks[seen];
  if (!back) fail("the browser never reached the client's redirect");
  if (back.searchParams.get("iss") !== base) fail(`iss is ${back.searchParams.get("iss")}`);
  return back;
}

async function connect(provider) {
  const client = new Client({ name: provider.name, version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return client;
}

// 1. Discovery, dynamic registration and consent, through the SDK.
const sdk = new Provider("e2e SDK client");
const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: sdk });
try {
  await new Client({ name: "e2e", version: "1.0.0" }).connect(first);
  fail("an unauthenticated client connected");
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
}
if (!sdk.client?.client_id?.startsWith("srmc-")) fail("the SDK did not register");
if (!sdk.authorizationUrl) fail("the SDK was not sent to authorize");
const back = await consentInBrowser(sdk.authorizationUrl, { repos: [repo], access: "write" });
await first.finishAuth(back.searchParams.get("code"));
console.log("oauth e2e: discovered, registered, consented in the browser, exchanged the code");

// 2. Calls inside the grant, and one outside it.
let client = await connect(sdk);
const listed = await client.callTool({ name: "list_repos", arguments: {} });
const ids = listed.structuredContent.repos.map((r) => r.repo_id);
if (ids.length !== 1 || ids[0] !== repo) fail(`list_repos answered ${JSON.stringify(ids)}`);
const wrote = await client.callTool({
  name: "update_repo_files",
  arguments: { repo_id: repo, operations: [{ type: "write", path: "from-oauth.txt", content: "granted\n" }] },
});
if (wrote.isError) fail(`a write inside the grant failed: ${JSON.stringify(wrote.content)}`);
const outside = await client.callTool({ name: "read_file", arguments: { repo_id: otherRepo, path: "a.txt" } });
if (!outside.isError) fail("a repo outside the grant was readable");
console.log("oauth e2e: calls inside the grant work; outside it, refused");

// 3. A refresh: a new access token that works, the old refresh token spent.
const meta = await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json();
const before = sdk.saved;
const refreshed = await fetch(meta.token_endpoint, {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: before.refresh_token, client_id: sdk.client.client_id }),
});
if (refreshed.status !== 200) fail(`refresh answered ${refreshed.status}`);
sdk.saved = await refreshed.json();
if (sdk.saved.access_token === before.access_token) fail("the refresh gave the same access token");
await client.close();
client = await connect(sdk);
await client.callTool({ name: "list_repos", arguments: {} });
console.log("oauth e2e: refreshed, and the new token works");

// 4. Revocation (RFC 7009) ends the grant: the next call is refused.
const revoked = await fetch(meta.revocation_endpoint, {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ token: sdk.saved.refresh_token, client_id: sdk.client.client_id }),
});
if (revoked.status !== 200) fail(`revocation answered ${revoked.status}`);
let refused = false;
try {
  const r = await client.callTool({ name: "list_repos", arguments: {} });
  refused = r.isError === true;
} catch {
  refused = true;
}
if (!refused) fail("a call after the revocation was answered");
console.log("oauth e2e: revoked, and the next call is refused");

// 5. A client named by its metadata document, read-only, through the same pages.
const docUrl = `${here}/client.json`;
metadataDoc = { client_id: docUrl, client_name: "e2e metadata client", redirect_uris: [redirectUrl] };
const verifier = randomBytes(32).toString("base64url");
const challenge = createHash("sha256").update(verifier).digest("base64url");
const authorize = new URL(meta.authorization_endpoint);
for (const [k, v] of Object.entries({
  response_type: "code", client_id: docUrl, redirect_uri: redirectUrl, state: "doc-state",
  code_challenge: challenge, code_challenge_method: "S256", resource: mcpUrl,
})) authorize.searchParams.set(k, v);
const docBack = await consentInBrowser(authorize, { repos: [repo, otherRepo], access: "read" });
if (docBack.searchParams.get("state") !== "doc-state") fail("state was not echoed");
const exchanged = await fetch(meta.token_endpoint, {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({
    grant_type: "authorization_code", code: docBack.searchParams.get("code"), redirect_uri: redirectUrl,
    client_id: docUrl, code_verifier: verifier, resource: mcpUrl,
  }),
});
if (exchanged.status !== 200) fail(`the metadata client's exchange answered ${exchanged.status}`);
const docTokens = await exchanged.json();
if (docTokens.scope !== "read") fail(`the read-only grant has scope ${docTokens.scope}`);
const readOnly = new Client({ name: "doc", version: "1.0.0" });
await readOnly.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), {
  requestInit: { headers: { Authorization: `Bearer ${docTokens.access_token}` } },
}));
const two = await readOnly.callTool({ name: "list_repos", arguments: {} });
if (two.structuredContent.repos.length !== 2) fail("the metadata client's grant does not list both repos");
const tools = (await readOnly.listTools()).tools.map((t) => t.name);
if (tools.includes("update_repo_files")) fail("a read-only grant lists a write tool");
console.log("oauth e2e: a client named by its metadata document signed in read-only");

await readOnly.close();
await browser.close();
server.close();
console.log("oauth e2e: ok");
process.exit(0);
