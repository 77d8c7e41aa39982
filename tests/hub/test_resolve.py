"""Handles: local folders, bundled models, and https downloads into the TF Hub cache."""

import hashlib
import http.server
import io
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from sft.config import ModelConfig
from sft.errors import HubError
from sft.hub import resolve
from tests.conftest import dialogue_rows, write_csv


def test_local_folder_is_checked(tmp_path, tiny_hub):
    assert resolve.resolve_handle(str(tiny_hub / "encoder"), "encoder") == str(tiny_hub / "encoder")
    with pytest.raises(HubError, match="neither a URL, a bundled:<name> handle, nor an existing folder"):
        resolve.resolve_handle(str(tmp_path / "missing"), "encoder")
    with pytest.raises(HubError, match="is not a SavedModel folder"):
        resolve.resolve_handle(str(tmp_path), "encoder")


def test_unknown_bundled_model_lists_the_known_ones():
    with pytest.raises(HubError, match=r"unknown bundled model 'bert-huge' \(bundled models: minilm-l6-uncased, tiny-random\)"):
        resolve.resolve_handle("bundled:bert-huge", "encoder")


def test_preprocessor_defaults_to_the_exported_sibling(tiny_hub):
    assert resolve.default_preprocessor(str(tiny_hub / "encoder")) == str(tiny_hub / "preprocessor")
    assert resolve.default_preprocessor("bundled:tiny-random") == "bundled:tiny-random"
    assert resolve.default_preprocessor("https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4") is None


def test_bundled_model_is_materialised_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SFT_CACHE_DIR", str(tmp_path))
    folder = resolve.materialise_bundled("tiny-random")
    assert (folder / "encoder" / "saved_model.pb").is_file()
    stamp = (folder / "encoder" / "saved_model.pb").stat().st_mtime_ns
    assert resolve.materialise_bundled("tiny-random") == folder
    assert (folder / "encoder" / "saved_model.pb").stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == ["tiny-random"]
    assert folder.parent.parent == tmp_path


def test_losing_a_race_to_materialise_is_not_an_error(monkeypatch, tmp_path):
    from sft.hub import export

    monkeypatch.setenv("SFT_CACHE_DIR", str(tmp_path))
    finish_first = export.export_tiny

    def other_process_wins(folder):
        finish_first(folder)  # a second worker renames its export into place first...
        raise OSError(39, "Directory not empty")  # ...so ours cannot be

    monkeypatch.setattr(export, "export_tiny", other_process_wins)
    assert (resolve.materialise_bundled("tiny-random") / "encoder" / "saved_model.pb").is_file()


def test_unreachable_url_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(HubError, match="cannot load encoder 'https://127.0.0.1:9/bert'"):
        resolve.load("https://127.0.0.1:9/bert", "encoder")


# --- the https path, for real: a TLS server on loopback serving TF Hub archives ----------------


def _archive(folder: Path) -> bytes:
    """A compressed TF Hub archive: a tar.gz whose root is the SavedModel."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


@pytest.fixture
def https_hub(tmp_path, tiny_hub):
    """Serves /tiny/encoder and /tiny/preprocessor?tf-hub-format=compressed over TLS on 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the loopback server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    archives = {f"/tiny/{kind}": _archive(tiny_hub / kind) for kind in ("encoder", "preprocessor")}
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path, _, query = self.path.partition("?")
            requests.append(self.path)
            if path not in archives or query != "tf-hub-format=compressed":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(len(archives[path])))
            self.end_headers()
            self.wfile.write(archives[path])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/tiny", cert, requests, server
    server.shutdown()
    server.server_close()


def _sft(*args, env):
    return subprocess.run([sys.executable, "-m", "sft", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_https_handle_is_downloaded_once_then_used_offline(tmp_path, https_hub):
    url, cert, requests, server = https_hub
    write_csv(tmp_path / "d.csv", dialogue_rows())
    (tmp_path / "c.yaml").write_text(
        f"data: {{files: [{tmp_path / 'd.csv'}], prepared_dir: {tmp_path / 'prepared'}}}\n"
        f"model: {{encoder: '{url}/encoder', preprocessor: '{url}/preprocessor', max_seq_length: 32}}\n"
        f"train: {{run_dir: {tmp_path / 'run'}, epochs: 1, batch_size: 8}}\n"
    )
    cache = tmp_path / "tfhub"
    # The certificate of the loopback server is trusted the standard way, not by turning checks off.
    env = os.environ | {"TFHUB_CACHE_DIR": str(cache), "SSL_CERT_FILE": str(cert)}
    assert _sft("prepare", "--config", str(tmp_path / "c.yaml"), env=env).returncode == 0

    first = _sft("train", "--config", str(tmp_path / "c.yaml"), env=env)
    assert first.returncode == 0, first.stderr
    assert sorted(requests) == ["/tiny/encoder?tf-hub-format=compressed", "/tiny/preprocessor?tf-hub-format=compressed"]
    for kind in ("encoder", "preprocessor"):
        folder = cache / hashlib.sha1(f"{url}/{kind}".encode()).hexdigest()
        assert (folder / "saved_model.pb").is_file()

    server.shutdown()
    server.server_close()
    second = _sft("train", "--config", str(tmp_path / "c.yaml"), "--overwrite", env=env)
    assert second.returncode == 0, second.stderr
    assert len(requests) == 2  # nothing fetched the second time
    assert (tmp_path / "run" / "train_summary.json").is_file()


def _write_vocab(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    return path


def test_the_vocabulary_is_found_on_disk_and_never_downloaded_or_built(tmp_path, monkeypatch):
    vocab = _write_vocab(tmp_path / "model" / "preprocessor" / "assets" / "vocab.txt")
    (tmp_path / "model" / "preprocessor" / "saved_model.pb").write_bytes(b"")
    assert resolve.local_vocab(ModelConfig(encoder=str(tmp_path / "model" / "encoder"))) == vocab  # beside the encoder
    assert resolve.local_vocab(ModelConfig(encoder="https://tfhub.dev/x/1", preprocessor="https://tfhub.dev/y/1")) is None

    monkeypatch.setenv("SFT_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve.local_vocab(ModelConfig(encoder="bundled:tiny-random")) is None  # not built yet
    built = _write_vocab(resolve.bundled_folder("tiny-random") / "preprocessor" / "assets" / "vocab.txt")
    assert resolve.local_vocab(ModelConfig(encoder="bundled:tiny-random")) == built
