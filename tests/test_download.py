"""`rayrag data download` against a real HTTP server on 127.0.0.1 serving a BEIR-style zip."""
import http.server
import threading
import zipfile
from functools import partial

import pytest

from rayrag.cli import main
from tests.conftest import free_port


@pytest.fixture
def beir_site(tmp_path, data_dir):
    site = tmp_path / "site"
    site.mkdir()
    src = data_dir / "scifact"
    with zipfile.ZipFile(site / "tiny.zip", "w") as z:
        lines = (src / "corpus.jsonl").read_text().splitlines()[:50]
        z.writestr("tiny/corpus.jsonl", "\n".join(lines) + "\n")
        import json
        ids = {json.loads(l)["_id"] for l in lines}
        qrels = [l for l in (src / "qrels" / "test.tsv").read_text().splitlines()[1:] if l.split("\t")[1] in ids]
        qids = {l.split("\t")[0] for l in qrels}
        queries = [l for l in (src / "queries.jsonl").read_text().splitlines() if json.loads(l)["_id"] in qids]
        z.writestr("tiny/queries.jsonl", "\n".join(queries) + "\n")
        z.writestr("tiny/qrels/test.tsv", "query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    (site / "broken.zip").write_bytes(b"not a zip")
    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), partial(http.server.SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/{{name}}.zip"
    server.shutdown()
    server.server_close()


def test_download_unzips_and_validates(beir_site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYRAG_BEIR_URL", beir_site)
    dest = tmp_path / "data"
    assert main(["data", "download", "tiny", "--data-dir", str(dest)]) == 0
    assert (dest / "tiny" / "corpus.jsonl").is_file()
    assert sorted(p.name for p in dest.iterdir()) == ["tiny"], "no temp files left"
    assert main(["data", "check", "tiny", "--data-dir", str(dest)]) == 0
    assert main(["data", "download", "tiny", "--data-dir", str(dest)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("name, message", [("missing", "HTTP 404"), ("broken", "not return a valid zip")])
def test_download_failures_leave_nothing(beir_site, tmp_path, monkeypatch, capsys, name, message):
    monkeypatch.setenv("RAYRAG_BEIR_URL", beir_site)
    dest = tmp_path / "data"
    assert main(["data", "download", name, "--data-dir", str(dest)]) == 2
    assert message in capsys.readouterr().err
    assert list(dest.iterdir()) == []


def test_no_network_is_said_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYRAG_BEIR_URL", f"http://127.0.0.1:{free_port()}/{{name}}.zip")  # nothing listens
    assert main(["data", "download", "scifact", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and "No network here?" in err
    assert list(tmp_path.iterdir()) == []
