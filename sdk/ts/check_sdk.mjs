// The official TypeScript SDK (@relace-ai/relace 0.6.0) against `scoped-repo-mcp api`,
// unchanged: only RELACE_BASE_URL and RELACE_API_KEY point it here. Exits non-zero on
// the first behaviour that differs from the hosted service's.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Relace from '@relace-ai/relace';

const APP = 'export function login(token) {\n  return check(token);\n}\n';

async function expectStatus(promise, statuses, what) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Relace.APIError, `${what}: ${e}`);
    assert.ok(statuses.includes(e.status), `${what}: expected ${statuses}, got ${e.status}`);
    return;
  }
  assert.fail(`${what}: expected an error ${statuses}, got success`);
}

const sorted = (xs) => [...xs].sort();

const client = new Relace(); // RELACE_API_KEY and RELACE_BASE_URL from the environment

const repo = await client.repo.create({
  metadata: { name: 'sdk-check-ts' },
  source: {
    type: 'files',
    files: [
      { filename: 'src/app.js', content: APP },
      { filename: 'README.md', content: '# check\n' },
    ],
  },
});
const rid = repo.repo_id;
assert.deepEqual(sorted(repo.changed_files), ['README.md', 'src/app.js']);

const meta = await client.repo.get(rid);
assert.equal(meta.repo_id, rid);
assert.deepEqual(meta.metadata, { name: 'sdk-check-ts' });
const listed = await client.repo.list({ filter_metadata: '{"name": "sdk-check-ts"}' });
assert.ok(listed.items.some((r) => r.repo_id === rid));

// Update by diff: deletes, then writes, then renames.
const diff = await client.repo.update(rid, {
  source: {
    type: 'diff',
    operations: [
      { type: 'write', filename: 'src/util.js', content: 'export const check = (t) => !!t;\n' },
      { type: 'rename', old_filename: 'README.md', new_filename: 'docs/README.md' },
    ],
  },
});
assert.notEqual(diff.repo_head, repo.repo_head);
assert.deepEqual(sorted(diff.changed_files), ['README.md', 'docs/README.md', 'src/util.js']);
await expectStatus(
  client.repo.update(rid, { source: { type: 'diff', operations: [{ type: 'delete', filename: 'nope.txt' }] } }),
  [404],
  'deleting a missing file',
);

// Update by snapshot: the list becomes the whole tree.
const snap = await client.repo.update(rid, {
  source: {
    type: 'files',
    files: [
      { filename: 'src/app.js', content: APP },
      { filename: 'src/util.js', content: 'export const check = (t) => t != null;\n' },
    ],
  },
});
assert.ok(snap.changed_files.includes('docs/README.md'));

// Single files: read, write, delete (the SDK encodes the path's slashes).
assert.equal(await client.repo.file.download('src/app.js', { repo_id: rid }), APP);
const put = await client.repo.file.upload('notes/todo.txt', 'write tests\n', { repo_id: rid });
assert.deepEqual(put.changed_files, ['notes/todo.txt']);
assert.equal(await client.repo.file.download('notes/todo.txt', { repo_id: rid }), 'write tests\n');
const gone = await client.repo.file.delete('notes/todo.txt', { repo_id: rid });
assert.deepEqual(gone.changed_files, ['notes/todo.txt']);
await expectStatus(client.repo.file.download('notes/todo.txt', { repo_id: rid }), [404], 'reading a deleted file');

const cloned = await client.repo.clone(rid);
assert.deepEqual(sorted(cloned.files.map((f) => f.filename)), ['src/app.js', 'src/util.js']);

const found = await client.repo.retrieve(rid, { query: 'login token', include_content: true });
assert.equal(found.results[0].filename, 'src/app.js');
assert.equal(found.results[0].content, APP);
const status = await client.repo.embeddingStatus(rid);
assert.equal(status.pending_embeddings, 0);

// Search: the SDK streams events from /agent (relace-search); the last carries the results.
const events = [];
for await (const event of await client.repo.search(rid, { query: 'login' })) events.push(event);
assert.equal(events.at(-1).event, 'result');
assert.deepEqual(
  events.at(-1).data.results.map((h) => [h.filename, h.line_number]),
  [['src/app.js', 1]],
);

// Repo tokens: create, get, use, refuse elsewhere, delete.
const other = await client.repo.create({ source: { type: 'files', files: [{ filename: 'x.txt', content: 'x\n' }] } });
const token = await client.repoToken.create({ name: 'sdk-check', repo_ids: [rid], ttl_seconds: 600 });
assert.ok(token.token.startsWith('rlcr-'));
assert.deepEqual(token.repo_ids, [rid]);
const got = await client.repoToken.get(token.token);
assert.equal(got.name, 'sdk-check');
assert.deepEqual(got.repo_ids, [rid]);

const asToken = new Relace({ apiKey: token.token });
const tokenClone = await asToken.repo.clone(rid);
assert.deepEqual(sorted(tokenClone.files.map((f) => f.filename)), ['src/app.js', 'src/util.js']);
await expectStatus(asToken.repo.clone(other.repo_id), [403, 404], 'a token on another repo');
await expectStatus(asToken.repo.list(), [403], 'a token listing every repo');
await expectStatus(asToken.repoToken.create({ name: 'x', repo_ids: [rid] }), [403], 'a token minting tokens');

// The SDK's git helper, which always names https://api.relace.run with the credential
// in the URL (https://token:<credential>@api.relace.run/...): `scoped-repo-mcp git-env`
// prints the GIT_CONFIG_* settings of one url.<base>.insteadOf rule for that credential,
// and git, run by the helper, inherits them from this process's environment.
{
  const settings = execFileSync(
    process.env.SCOPED_REPO_MCP_BIN,
    ['git-env', '--url', process.env.RELACE_BASE_URL, '--token', token.token],
    { encoding: 'utf8' },
  );
  for (const line of settings.trim().split('\n')) {
    const at = line.indexOf('=');
    process.env[line.slice(0, at)] = line.slice(at + 1);
  }
  const path = join(mkdtempSync(join(tmpdir(), 'sdk-git-')), 'clone');
  const git = asToken.git(path);
  git.clone({ repoId: rid });
  assert.equal(readFileSync(join(path, 'src/app.js'), 'utf8'), APP);
  writeFileSync(join(path, 'src/fromGit.js'), 'export const pushed = true;\n');
  git.add().commit({ message: 'Add fromGit.js' }).push();
  assert.equal(await client.repo.file.download('src/fromGit.js', { repo_id: rid }), 'export const pushed = true;\n');
  await client.repo.update(rid, {
    source: { type: 'diff', operations: [{ type: 'write', filename: 'src/rest.js', content: 'export const rest = 1;\n' }] },
  });
  git.pull();
  assert.equal(readFileSync(join(path, 'src/rest.js'), 'utf8'), 'export const rest = 1;\n');
}

await client.repoToken.delete(token.token);
await expectStatus(asToken.repo.clone(rid), [401], 'a deleted token');
await expectStatus(client.repoToken.get(token.token), [404], 'getting a deleted token');

await client.repo.delete(other.repo_id);
await client.repo.delete(rid);
await expectStatus(client.repo.get(rid), [404], 'a deleted repo');
console.log('TypeScript SDK @relace-ai/relace 0.6.0: ok');
