"""The official Python SDK (`relace` 2.1.0) against `scoped-repo-mcp api`, unchanged:
only RELACE_BASE_URL and RELACE_API_KEY point it here. Exits non-zero on the first
behaviour that differs from the hosted service's."""

import os
import subprocess
import tempfile

import relace
from relace import Relace

APP = "def login(token):\n    return check(token)\n"


def expect_status(call, statuses, what):
    try:
        call()
    except relace.APIStatusError as e:
        assert e.status_code in statuses, f"{what}: expected {statuses}, got {e.status_code}"
        return e.status_code
    raise AssertionError(f"{what}: expected an error {statuses}, got success")


def route_git_here(credential):
    """Send the SDK's git helper, which always names https://api.relace.run with the
    credential in the URL (https://token:<credential>@api.relace.run/...), to this
    server: `scoped-repo-mcp git-env` prints the GIT_CONFIG_* settings of one
    url.<base>.insteadOf rule for that credential, and git, run by the helper,
    inherits them from this process's environment."""
    out = subprocess.run(
        [os.environ["SCOPED_REPO_MCP_BIN"], "git-env", "--url", os.environ["RELACE_BASE_URL"], "--token", credential],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        name, value = line.split("=", 1)
        os.environ[name] = value


def check_git(client, as_token, rid):
    """The SDK's git helper with a repo token: shallow clone, commit, push; the REST
    API sees the push, and a pull brings a REST update back."""
    route_git_here(as_token.api_key)
    work = tempfile.mkdtemp()
    path = os.path.join(work, "clone")
    git = as_token.git(path)
    git.clone(rid)
    with open(os.path.join(path, "src", "app.py")) as f:
        assert f.read() == APP
    with open(os.path.join(path, "src", "from_git.py"), "w") as f:
        f.write("PUSHED = True\n")
    git.add().commit("Add from_git.py").push()
    assert client.repo.file.download("src/from_git.py", repo_id=rid) == "PUSHED = True\n"
    client.repo.update(
        rid,
        source={"type": "diff", "operations": [{"type": "write", "filename": "src/rest.py", "content": "REST = 1\n"}]},
    )
    git.pull()
    with open(os.path.join(path, "src", "rest.py")) as f:
        assert f.read() == "REST = 1\n"


def main():
    client = Relace()  # RELACE_API_KEY and RELACE_BASE_URL from the environment

    repo = client.repo.create(
        metadata={"name": "sdk-check-python"},
        source={
            "type": "files",
            "files": [
                {"filename": "src/app.py", "content": APP},
                {"filename": "README.md", "content": "# check\n"},
            ],
        },
    )
    rid = repo.repo_id
    assert repo.repo_head and sorted(repo.changed_files) == ["README.md", "src/app.py"], repo

    meta = client.repo.get(rid)
    assert meta.repo_id == rid and meta.metadata == {"name": "sdk-check-python"}, meta
    listed = client.repo.list(filter_metadata='{"name": "sdk-check-python"}')
    assert rid in [r.repo_id for r in listed.items], listed

    # Update by diff: deletes, then writes, then renames.
    diff = client.repo.update(
        rid,
        source={
            "type": "diff",
            "operations": [
                {"type": "write", "filename": "src/util.py", "content": "def check(t):\n    return bool(t)\n"},
                {"type": "rename", "old_filename": "README.md", "new_filename": "docs/README.md"},
            ],
        },
    )
    assert diff.repo_head != repo.repo_head, diff
    assert set(diff.changed_files) == {"src/util.py", "README.md", "docs/README.md"}, diff
    expect_status(
        lambda: client.repo.update(rid, source={"type": "diff", "operations": [{"type": "delete", "filename": "nope.txt"}]}),
        {404},
        "deleting a missing file",
    )

    # Update by snapshot: the list becomes the whole tree.
    snap = client.repo.update(
        rid,
        source={
            "type": "files",
            "files": [
                {"filename": "src/app.py", "content": APP},
                {"filename": "src/util.py", "content": "def check(t):\n    return t is not None\n"},
            ],
        },
    )
    assert "docs/README.md" in snap.changed_files, snap

    # Single files: read, write, delete.
    assert client.repo.file.download("src/app.py", repo_id=rid) == APP
    put = client.repo.file.upload("notes/todo.txt", b"write tests\n", repo_id=rid)
    assert put.changed_files == ["notes/todo.txt"], put
    assert client.repo.file.download("notes/todo.txt", repo_id=rid) == "write tests\n"
    gone = client.repo.file.delete("notes/todo.txt", repo_id=rid)
    assert gone.changed_files == ["notes/todo.txt"], gone
    expect_status(lambda: client.repo.file.download("notes/todo.txt", repo_id=rid), {404}, "reading a deleted file")

    cloned = client.repo.clone(rid)
    assert sorted(f.filename for f in cloned.files) == ["src/app.py", "src/util.py"], cloned

    # Ranked retrieval: no SDK method in this version, so the client's generic POST.
    found = client.post(
        f"/repo/{rid}/retrieve",
        body={"query": "login token", "include_content": True},
        cast_to=object,
    )
    assert found["results"][0]["filename"] == "src/app.py", found
    assert found["results"][0]["content"] == APP, found

    # Search: the SDK asks for an event stream; the last event carries the results.
    events = list(client.repo.search(rid, query="login"))
    assert events[-1]["event"] == "result", events
    hits = events[-1]["data"]["results"]
    assert [(h["filename"], h["line_number"]) for h in hits] == [("src/app.py", 1)], hits

    # Repo tokens: create, get, use, refuse elsewhere, delete.
    other = client.repo.create(source={"type": "files", "files": [{"filename": "x.txt", "content": "x\n"}]})
    token = client.repo_token.create(name="sdk-check", repo_ids=[rid], ttl_seconds=600)
    assert token.token.startswith("rlcr-") and token.repo_ids == [rid] and token.expires_at, token
    got = client.repo_token.get(token.token)
    assert got.name == "sdk-check" and got.repo_ids == [rid], got

    as_token = Relace(api_key=token.token)
    assert sorted(f.filename for f in as_token.repo.clone(rid).files) == ["src/app.py", "src/util.py"]
    assert as_token.repo.file.download("src/app.py", repo_id=rid) == APP
    expect_status(lambda: as_token.repo.clone(other.repo_id), {403, 404}, "a token on another repo")
    expect_status(lambda: as_token.repo.list(), {403}, "a token listing every repo")
    expect_status(
        lambda: as_token.repo_token.create(name="x", repo_ids=[rid]), {403}, "a token minting tokens"
    )

    check_git(client, as_token, rid)

    client.repo_token.delete(token.token)
    expect_status(lambda: as_token.repo.clone(rid), {401}, "a deleted token")
    expect_status(lambda: client.repo_token.get(token.token), {404}, "getting a deleted token")

    client.repo.delete(other.repo_id)
    client.repo.delete(rid)
    expect_status(lambda: client.repo.get(rid), {404}, "a deleted repo")
    print("python SDK relace 2.1.0: ok")


if __name__ == "__main__":
    main()
