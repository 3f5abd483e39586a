"""Foundation: profiles, seeding, data builders, tokenizers, nn blocks, checkpoints/manifest, runner."""

import json

import pytest
import torch

from labcore import checkpoint, course
from labcore.data import (
    course_corpus,
    encode_corpus,
    from_hub,
    from_text_files,
    random_windows,
    stdlib_code,
    stdlib_prose,
    train_val_split,
)
from labcore.nn import GPT, CausalConv1d, GPTConfig, RMSNorm, SwiGLU
from labcore.runtime import pick, resolve_profile, seed_everything
from labcore.tokenizer import BPETokenizer, ByteTokenizer

# ---- runtime ----------------------------------------------------------------------------------------

def test_profiles(monkeypatch):
    monkeypatch.setenv("LABCORE_PROFILE", "smoke")
    assert resolve_profile("auto").name == "smoke"
    monkeypatch.delenv("LABCORE_PROFILE")
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert resolve_profile("auto").name == expected
    assert pick("cpu", smoke=1, cpu=2, gpu=3) == 2
    with pytest.raises(ValueError, match="profile must be one of"):
        resolve_profile("large")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs CUDA"):
            resolve_profile("gpu")


def test_seed_everything_is_reproducible():
    seed_everything(7)
    a = torch.randn(3)
    seed_everything(7)
    assert torch.equal(a, torch.randn(3))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


# ---- data + tokenizers ------------------------------------------------------------------------------

def test_stdlib_builders_are_datasets():
    prose, code = stdlib_prose(), stdlib_code(max_files=5)
    assert prose.column_names == ["text"] and prose.num_rows > 50
    assert code.num_rows == 5 and "def " in code[0]["text"]
    train, val = train_val_split(prose, 0.1)
    assert train.num_rows + val.num_rows == prose.num_rows and not set(val["text"]) & set(train["text"])
    with pytest.raises(ValueError, match="source"):
        course_corpus("wiki")


def test_local_files_and_hub_loader_on_local_data(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nline two")
    (tmp_path / "b.txt").write_text("second doc")
    ds = from_text_files([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert sorted(ds["text"]) == ["first doc\nline two", "second doc"]
    assert from_text_files([tmp_path / "a.txt"], by="line").num_rows == 2
    with pytest.raises(FileNotFoundError):
        from_text_files([tmp_path / "missing.txt"])
    # the Hub loader, pointed at a local dataset folder (same code path as a Hub name)
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "train.jsonl").write_text("\n".join(json.dumps({"content": f"doc {i}", "id": i}) for i in range(4)))
    ds = from_hub(str(hub), split="train", text_column="content")
    assert ds.column_names == ["text"] and ds["text"][0] == "doc 0"
    with pytest.raises(ValueError, match="text_column"):
        from_hub(str(hub), text_column="body")


def test_byte_tokenizer_round_trip_and_windows():
    tok = ByteTokenizer()
    text = "héllo, wörld\n"
    assert tok.decode(tok.encode(text)) == text and tok.vocab_size == 257
    ids = encode_corpus(stdlib_prose(max_docs=3), tok)
    assert ids.dtype == torch.long and (ids == tok.eos_id).sum() == 3
    x, y = random_windows(ids, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_bpe_trains_caches_and_round_trips(tmp_path):
    texts = stdlib_prose(max_docs=20)["text"]
    tok = BPETokenizer.train(texts, vocab_size=400, cache_dir=tmp_path)
    assert tok.vocab_size == 400 and len(list(tmp_path.glob("bpe-400-*.json"))) == 1
    sample = texts[0][:200]
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(sample)) < len(sample.encode())  # it actually merges
    again = BPETokenizer.train(texts, vocab_size=400, cache_dir=tmp_path)  # from cache
    assert again.encode(sample) == tok.encode(sample)
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(texts, vocab_size=100, cache_dir=tmp_path)


# ---- nn -----------------------------------------------------------------------------------------------

def test_rmsnorm_and_swiglu():
    x = torch.randn(2, 3, 8)
    norm = RMSNorm(8)
    ref = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), ref)
    mlp = SwiGLU(8, hidden=16)
    torch.testing.assert_close(mlp(x), mlp.down(torch.nn.functional.silu(mlp.gate(x)) * mlp.up(x)))


def test_causal_conv_streams_like_full_sequence():
    conv = CausalConv1d(6, kernel_size=4)
    x = torch.randn(2, 11, 6)
    full, _ = conv(x)
    out, cache = [], None
    for piece in (x[:, :3], x[:, 3:4], x[:, 4:]):
        y, cache = conv(piece, cache)
        out.append(y)
    torch.testing.assert_close(torch.cat(out, 1), full)


def test_gpt_is_causal_and_validates():
    model = GPT(GPTConfig(vocab_size=20, block_size=12, n_layer=2, n_head=2, d_model=16)).eval()
    x = torch.randint(0, 20, (1, 10))
    x2 = x.clone()
    x2[0, 7] = (x2[0, 7] + 1) % 20
    torch.testing.assert_close(model(x)[:, :7], model(x2)[:, :7])
    assert not torch.allclose(model(x)[:, 7], model(x2)[:, 7])
    logits, h = model(x, return_hidden=True)
    torch.testing.assert_close(logits, model.lm_head(h))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=10, n_head=3)


# ---- checkpoints + manifest -----------------------------------------------------------------------

def test_save_load_and_manifest(tmp_path):
    digest = checkpoint.save_tensors(tmp_path / "w.safetensors", {"a": torch.arange(4.0)}, {"note": "x"})
    tensors, meta = checkpoint.load_tensors(tmp_path / "w.safetensors", expected_sha256=digest)
    assert torch.equal(tensors["a"], torch.arange(4.0)) and meta == {"note": "x"}
    manifest = tmp_path / "MANIFEST.json"
    checkpoint.register_artifact("w", tmp_path / "w.safetensors", "test", "none", manifest=manifest)
    assert checkpoint.artifact_path("w", manifest=manifest) == tmp_path / "w.safetensors"
    checkpoint.save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(4)})  # replaced behind its back
    with pytest.raises(ValueError, match="does not match its sha256"):
        checkpoint.artifact_path("w", manifest=manifest)


def test_shipped_artifacts_match_manifest():
    entries = checkpoint.read_manifest()
    for name in entries:
        checkpoint.artifact_path(name)  # raises on mismatch
    total = sum(e["bytes"] for e in entries.values())
    assert total < 20_000_000, "data/ must stay small"


def test_course_selection():
    assert [c.stem for c in course.select("01")] == ["01_autodeco"]
    with pytest.raises(ValueError, match="matches no chapter"):
        course.select("99")


def test_notebook_cell_ids_follow_content():
    import nbformat

    from labcore.notebooks import stable_ids

    def ids(sources):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        stable_ids(nb)
        nbformat.validate(nb)  # ids must stay valid nbformat ids
        return [c.id for c in nb.cells]

    a, b = ids(["x = 1", "y = 2", "x = 1"]), ids(["x = 1", "z = 0", "y = 2", "x = 1"])
    assert a == ids(["x = 1", "y = 2", "x = 1"]), "same content must give the same ids on every sync"
    assert len(set(a)) == 3, "repeated cells still need distinct ids"
    assert [b[0], b[2], b[3]] == a, "inserting a cell must not change the other cells' ids"


def test_text_files_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert from_text_files(str(tmp_path / "a.txt"))["text"] == ["hello world"]  # a str is one path
    assert from_text_files(tmp_path / "a.txt")["text"] == ["hello world"]
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        from_text_files([tmp_path / "a.txt", tmp_path / "empty.txt"])
    with pytest.raises(ValueError, match=r"bin\.txt looks binary"):
        from_text_files([tmp_path / "bin.txt"])
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8"):
        from_text_files([tmp_path / "latin1.txt"])
    with pytest.raises(ValueError, match="paths is empty"):
        from_text_files([])
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("one")
    (folder / "sub" / "y.txt").write_text("two")
    (folder / "notes.md").write_text("not read")
    assert sorted(from_text_files(folder)["text"]) == ["one", "two"]  # a folder = its *.txt files
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        from_text_files(tmp_path / "nothing_here")


def test_from_hub_offline_fails_fast_with_pointer(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="stdlib_prose"):
        from_hub("wikitext", name="wikitext-2-raw-v1")  # `name` is the config, not a clash
    assert time.monotonic() - t0 < 2


def test_nb_check_reports_corrupt_notebook_in_one_line(tmp_path, monkeypatch):
    from labcore import notebooks

    (tmp_path / "01_x.ipynb").write_text("{not json")
    (tmp_path / "01_x.py").write_text("# %%\nx = 1\n")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    problems = notebooks.check()
    assert len(problems) == 1 and "01_x.ipynb: cannot be read" in problems[0] and "\n" not in problems[0]
