"""The rewrite job on a real local Ray: a tiny causal LM (plumbing, resume) and a real HTTP endpoint."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rayrag.config import from_dict
from rayrag.data.conversation import parse_conversation
from rayrag.data.mtrag import _read_form, load_human_tasks
from rayrag.datagen.rewrite import RewriteConfig, load_rewrites, load_turns, run_rewrite
from rayrag.datagen.rewriters import PROMPT, clean_rewrite, prompt_text
from rayrag.errors import ConfigError, DataError, RayragError


@pytest.mark.parametrize("raw, clean", [
    ('Rewritten question: "What is X?"', "What is X?"),
    ("\n Standalone question:\nWhat is Y?\nand more", "What is Y?"),
    ("|user|: 'Why?'", "Why?"),
    ("  \n ", ""),
])
def test_clean_rewrite(raw, clean):
    assert clean_rewrite(raw) == clean


@pytest.mark.parametrize("overrides, message", [
    ({}, "give exactly one rewriter"),
    ({"model": "smollm2-135m", "endpoint": "http://127.0.0.1:1/v1", "endpoint_model": "m"}, "exactly one rewriter"),
    ({"endpoint": "127.0.0.1:8000/v1", "endpoint_model": "m"}, "must be an http"),
    ({"endpoint": "http://127.0.0.1:8000/v1"}, "needs endpoint_model"),
    ({"model": "smollm2-135m", "max_new_tokens": 0}, r"max_new_tokens must be in \[1, 512\]"),
    ({"model": "smollm2-135m", "domains": ["finance"]}, r"unknown domain\(s\) \['finance'\]"),
    ({"model": "smollm2-135m", "source": "mtrag"}, "source must be one of"),
    ({"model": "smollm2-135m", "with_agent": True}, "needs source=mtragun-human"),
    ({"model": "smollm2-135m", "turns_per_shard": 0}, "turns_per_shard must be >= 1"),
])
def test_bad_rewrite_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RewriteConfig, overrides)


def test_unset_api_key_variable_fails_before_ray(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("RAYRAG_TEST_NO_SUCH_KEY", raising=False)
    cfg = from_dict(RewriteConfig, {"endpoint": "http://127.0.0.1:9/v1", "endpoint_model": "m", "data_dir": str(data_dir),
                                    "api_key_env": "RAYRAG_TEST_NO_SUCH_KEY", "output_dir": str(tmp_path / "o")})
    with pytest.raises(ConfigError, match="RAYRAG_TEST_NO_SUCH_KEY: that environment variable is not set"):
        run_rewrite(cfg)
    assert not (tmp_path / "o").exists()


def test_mtragun_turns_show_agent_turns_to_the_rewriter(data_dir):
    cfg = from_dict(RewriteConfig, {"source": "mtragun-human", "with_agent": True, "domains": ["fiqa"], "limit": 5,
                                    "model": "smollm2-135m", "data_dir": str(data_dir)})
    turns = load_turns(cfg)
    assert len(turns) == 5 and {t.domain for t in turns} == {"fiqa"}
    later = next(t for t in turns if t.turn > 1)
    assert "\n|agent|: " in prompt_text(later.messages, with_agent=True)
    assert "|agent|" not in prompt_text(later.messages, with_agent=False)


def _lines(path):
    return path.read_text().splitlines()


def test_model_rewrites_are_batched_bounded_and_resume_to_the_same_file(tmp_path, data_dir, tiny_llama, ray_local):
    import mlflow
    import pyarrow.parquet as pq

    out = tmp_path / "rw"
    base = {"model": str(tiny_llama), "domains": ["govt"], "limit": 10, "turns_per_shard": 3, "batch_size": 4,
            "max_new_tokens": 5, "data_dir": str(data_dir), "output_dir": str(out)}
    result = run_rewrite(from_dict(RewriteConfig, base))
    turns = load_human_tasks(data_dir / "mtrag", ["govt"])[:10]
    rows = [json.loads(l) for l in _lines(out / "rewrite.jsonl")]
    assert [r["_id"] for r in rows] == [t.qid for t in turns]  # one line per turn, in input order
    assert list(_read_form(out / "rewrite.jsonl")) == [t.qid for t in turns]  # MTRAG's own reader accepts it
    assert all(r["text"].startswith("|user|: ") and len(parse_conversation(r["text"])) == 1 for r in rows)
    assert _lines(out / "rewrite.jsonl")[0].startswith('{"_id":"')  # compact, as MTRAG publishes it
    shards = sorted((out / "shards").glob("shard-*.parquet"))
    assert len(shards) == 4  # 3 + 3 + 3 + 1
    table = [r for s in shards for r in pq.read_table(s).to_pylist()]
    assert all(0 <= r["new_tokens"] <= 5 for r in table)
    for r, t in zip(table, turns):  # an empty generation falls back to the turn itself, and is counted
        assert (r["rewrite"] == t.last_turn) if r["fallback"] else r["rewrite"] == clean_rewrite(r["raw"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == result["count"] == 10 and manifest["prompt"] == PROMPT
    assert manifest["fallbacks"] == result["fallbacks"] == sum(r["fallback"] for r in table)
    assert manifest["rewriter"]["model"] == str(tiny_llama) and manifest["rewriter"]["max_new_tokens"] == 5
    from rayrag.io import sha256_file

    assert manifest["sha256"] == sha256_file(out / "rewrite.jsonl")
    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.data.params["prompt"] == PROMPT and run.data.metrics["count"] == 10
    assert "prompt.txt" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}

    first = (out / "rewrite.jsonl").read_bytes()
    for s in (shards[1], shards[3]):  # lose two shards and the finished file: a rerun redoes only those
        s.unlink()
        s.with_suffix(".json").unlink()
    (out / "manifest.json").unlink()
    (out / "rewrite.jsonl").unlink()
    again = run_rewrite(from_dict(RewriteConfig, base))
    assert again["rewritten_now"] == 4 and (out / "rewrite.jsonl").read_bytes() == first
    assert run_rewrite(from_dict(RewriteConfig, base))["mlflow_run_id"] == again["mlflow_run_id"]  # complete: no-op

    with pytest.raises(ConfigError, match=r"holds rewrites of a different plan \(changed: max_new_tokens\)"):
        run_rewrite(from_dict(RewriteConfig, {**base, "max_new_tokens": 6}))

    assert load_rewrites(out) == {r["id"]: r["rewrite"] for r in table}  # what the teacher-scoring side reads
    (out / "rewrite.jsonl").write_bytes(first.replace(b"|user|: ", b"|user|:  ", 1))
    with pytest.raises(DataError, match="checksum differs"):
        load_rewrites(out)


class _ChatServer(BaseHTTPRequestHandler):
    """A deterministic OpenAI-compatible /v1/chat/completions: echoes the last user line as the rewrite."""

    fail_first = 0  # answer the first N requests with HTTP 500
    seen: list = []

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        if len(type(self).seen) <= type(self).fail_first:
            return self._send(500, {"error": "overloaded"})
        prompt = body["messages"][-1]["content"]
        last = [l for l in prompt.splitlines() if l.startswith("|user|: ")][-1][len("|user|: "):]
        content = "" if "wildfires" in last else f'Rewritten question: "{last} (standalone)"'
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 7}})

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _ChatServer.seen, _ChatServer.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_endpoint_rewrites_retry_server_errors_and_fall_back_on_empty_answers(tmp_path, data_dir, chat_server,
                                                                              ray_local, monkeypatch):
    monkeypatch.setenv("RAYRAG_TEST_LLM_KEY", "sk-test")
    _ChatServer.fail_first = 2  # the first two requests fail: retried, then the run goes on
    out = tmp_path / "rw"
    cfg = {"endpoint": chat_server, "endpoint_model": "tiny-chat", "api_key_env": "RAYRAG_TEST_LLM_KEY",
           "domains": ["govt"], "limit": 6, "turns_per_shard": 4, "concurrency": 1, "max_retries": 3,
           "data_dir": str(data_dir), "output_dir": str(out)}
    result = run_rewrite(from_dict(RewriteConfig, cfg))
    turns = load_human_tasks(data_dir / "mtrag", ["govt"])[:6]
    texts = [json.loads(l)["text"] for l in _lines(out / "rewrite.jsonl")]
    expected = [t.last_turn if "wildfires" in t.last_turn else clean_rewrite(f'"{t.last_turn} (standalone)"')
                for t in turns]
    assert texts == [f"|user|: {e}" for e in expected] and texts[1].endswith("keep? (standalone)")
    assert result["fallbacks"] == sum("wildfires" in t.last_turn for t in turns) >= 1
    assert len(_ChatServer.seen) == 6 + 2
    path, auth, body = _ChatServer.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "tiny-chat" and body["max_tokens"] == 64 and body["temperature"] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rewriter"]["endpoint"] == chat_server and "sk-test" not in (out / "manifest.json").read_text()


def test_endpoint_that_keeps_failing_stops_the_job_with_the_turn(tmp_path, data_dir, chat_server, ray_local):
    _ChatServer.fail_first = 10 ** 6
    cfg = {"endpoint": chat_server, "endpoint_model": "tiny-chat", "domains": ["govt"], "limit": 2, "max_retries": 1,
           "concurrency": 1, "data_dir": str(data_dir), "output_dir": str(tmp_path / "rw")}
    with pytest.raises(RayragError, match=r"chat/completions failed for turn '.+<::>1' after 2 tries; last: HTTP 500"):
        run_rewrite(from_dict(RewriteConfig, cfg))
    assert len(_ChatServer.seen) == 2 and not (tmp_path / "rw" / "manifest.json").exists()
