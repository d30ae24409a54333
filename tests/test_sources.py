"""The weight / file fetch layer (tao_sdk.sources): local, s3 (moto), https, hf:// and ngc://
against loopback servers (tests/weight_hubs.py), with the cache, resume, checks and errors."""

from __future__ import annotations

import hashlib
import threading

import pytest

from tao_sdk import datacache, sources
from tao_sdk.fetch import FetchError
from tests.weight_hubs import Hub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TAO_FETCH_PROGRESS_S", "0")
    for name in ("NGC_KEY", "NGC_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    h = Hub()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("NGC_API_URL", h.url + "/v2")
    monkeypatch.setenv("NGC_AUTH_URL", h.url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield h
    h.close()


def _gets(hub: Hub, path: str) -> list:
    return [r for r in hub.requests if r[0] == "GET" and r[1].endswith(path)]


def test_https_download_checked_cached_and_reported(hub):
    data = b"weights" * 1000
    hub.files["m.pth"] = data
    uri = f"{hub.url}/dl/m.pth#sha256={hashlib.sha256(data).hexdigest()}"
    lines = []
    path = sources.fetch(uri, "train.pretrained_model_path", lambda msg, fields: lines.append(fields))
    assert path.read_bytes() == data and path.name == "m.pth"
    assert lines[-1]["download"]["done"] and lines[-1]["download"]["bytes"] == len(data)
    assert sources.fetch(uri, "x") == path and len(_gets(hub, "/dl/m.pth")) == 1  # cached: no second GET
    assert sources.describe(uri)["sha256"] == hashlib.sha256(data).hexdigest()


def test_https_interrupted_download_resumes_with_range(hub):
    data = bytes(range(256)) * 4000
    hub.files["big.pth"] = data
    hub.cut.add("big.pth")
    path = sources.fetch(f"{hub.url}/dl/big.pth", "train.pretrained_model_path")
    assert path.read_bytes() == data
    ranges = [r[2] for r in _gets(hub, "/dl/big.pth")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and 0 < int(ranges[1][6:-1]) <= len(data) // 2


def test_https_broken_download_and_bad_checksum_are_clear_errors(hub, monkeypatch):
    monkeypatch.setenv("TAO_FETCH_ATTEMPTS", "2")
    hub.files["broken.pth"] = b"x" * 10000
    hub.always_cut.add("broken.pth")
    with pytest.raises(FetchError, match=r"train.pretrained_model_path: the download of .*broken.pth stopped at "
                                         r"\d+ of 10000 bytes after 2 attempt"):
        sources.fetch(f"{hub.url}/dl/broken.pth", "train.pretrained_model_path")
    hub.files["bad.pth"] = b"y" * 100
    with pytest.raises(FetchError, match="sha256 .* expected " + "0" * 64):
        sources.fetch(f"{hub.url}/dl/bad.pth#sha256={'0' * 64}", "w")
    assert not list(datacache.cache_root().rglob("bad.pth"))  # a file that failed its check is not kept
    with pytest.raises(FetchError, match="HTTP 404 .*does not exist"):
        sources.fetch(f"{hub.url}/dl/missing.pth", "w")


def test_concurrent_fetches_download_once(hub):
    hub.files["shared.pth"] = b"z" * 200000
    out = []
    threads = [threading.Thread(target=lambda: out.append(sources.fetch(f"{hub.url}/dl/shared.pth", "w")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 1 and len(_gets(hub, "/dl/shared.pth")) == 1


def test_hf_file_and_folder_through_hf_endpoint(hub):
    hub.files.update({"config.json": b'{"model_type": "rt_detr"}', "model.safetensors": b"S" * 300})
    f = sources.fetch("hf://org/tiny-model@main/model.safetensors", "train.pretrained_model_path")
    assert f.read_bytes() == b"S" * 300
    folder = sources.fetch("hf://org/tiny-model", "train.pretrained_model_path")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["config.json",
                                                                                      "model.safetensors"]
    with pytest.raises(FetchError, match="nope.bin is not in hf://org/tiny-model@main"):
        sources.fetch("hf://org/tiny-model/nope.bin", "w")


def test_ngc_public_and_private_models(hub, monkeypatch):
    hub.files.update({"model.pth": b"N" * 500, "README.md": b"readme", "notes.txt": b"n"})
    hub.ngc_page = 1  # three pages of one file: the checkpoint is on the second
    path = sources.fetch("ngc://nvidia/tao/pretrained_x:v1.0", "train.pretrained_model_path")
    assert path.read_bytes() == b"N" * 500  # the version's one checkpoint file, size and sha256_base64 checked
    gets = [r[1] for r in hub.requests if r[0] == "GET"]
    assert "/v2/models/nvidia/tao/pretrained_x/versions/v1.0" in gets  # guest API without a key
    assert _gets(hub, "/v2/models/org/nvidia/team/tao/pretrained_x/v1.0/files?redirect=true&path=model.pth")
    hub.ngc_key = "legacy-key-123"
    with pytest.raises(FetchError, match="needs NGC_KEY"):
        sources.fetch("ngc://myorg/private:v2/model.pth", "w")
    monkeypatch.setenv("NGC_KEY", "legacy-key-123")
    assert sources.fetch("ngc://myorg/private:v2/model.pth", "w").read_bytes() == b"N" * 500
    assert "/v2/org/myorg/models/private/versions/v2" in [r[1] for r in hub.requests]  # org API with a key
    assert sources.fetch("ngc://myorg/team1/private:v1/model.pth", "w").read_bytes() == b"N" * 500
    assert hub.scopes[-1] == ["group/ngc:myorg", "group/ngc:myorg/team1"]  # one scope parameter each
    monkeypatch.setenv("NGC_KEY", "wrong")
    with pytest.raises(FetchError, match="NGC refused the key") as err:
        sources.fetch("ngc://myorg/private:v3/model.pth", "w")
    assert "wrong" not in str(err.value)
    assert "/v2/models/org/myorg/private/v2/files?redirect=true&path=model.pth" in [r[1] for r in hub.requests]


def test_ngc_checksum_mismatch_is_refused(hub):
    hub.files["model.pth"] = b"X" * 300
    hub.ngc_listed["model.pth"] = b"M" * 300  # the storage serves other bytes than NGC checksummed
    with pytest.raises(FetchError, match="has sha256 .*expected") as err:
        sources.fetch("ngc://nvidia/tao/sum_bad:v1", "w")
    assert hashlib.sha256(b"M" * 300).hexdigest() in str(err.value)  # NGC's base64 digest, as hex


def test_s3_object_and_folder_and_local(s3_env, tmp_path, monkeypatch):
    from tao_sdk.storage import storage_for

    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    store = storage_for(f"s3://{s3_env}/x")
    store.write_bytes(f"s3://{s3_env}/ptm/model.pth", b"P" * 64)
    store.write_bytes(f"s3://{s3_env}/hf/config.json", b"{}")
    store.write_bytes(f"s3://{s3_env}/hf/model.safetensors", b"Q" * 32)
    assert sources.fetch(f"s3://{s3_env}/ptm/model.pth", "w").read_bytes() == b"P" * 64
    folder = sources.fetch(f"s3://{s3_env}/hf", "w")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["config.json",
                                                                                      "model.safetensors"]
    with pytest.raises(FetchError, match="does not exist and nothing is under it"):
        sources.fetch(f"s3://{s3_env}/nothing.pth", "w")
    with pytest.raises(FetchError, match="does not exist"):
        sources.fetch(str(tmp_path / "none.pth"), "w")
    assert sources.describe(str(folder))["kind"] == "folder"


def test_hub_credentials_count_as_secrets():
    """NGC_KEY / NGC_API_KEY / HF_TOKEN travel like the other secrets (a 0600 file on Slurm, never
    in sbatch arguments or records)."""
    from tao_sdk.platforms.slurm import split_secret_env

    plain, secret = split_secret_env({"NGC_KEY": "k", "NGC_API_KEY": "k2", "HF_TOKEN": "t", "HF_ENDPOINT": "http://h"})
    assert sorted(secret) == ["HF_TOKEN", "NGC_API_KEY", "NGC_KEY"] and list(plain) == ["HF_ENDPOINT"]
