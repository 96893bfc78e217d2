"""The weights registry: missing files name themselves, their folder and their source."""
from __future__ import annotations

import hashlib

import pytest

from pt_data.weights import (MissingWeightsError, WeightsChecksumError, WeightSpec, WeightsRegistry,
                             default_weights_dir, registered_weights)


def test_every_network_the_project_loads_is_registered():
    names = {s.name for s in registered_weights()}
    for need in ("hubert-base-ls960", "syncnet_v2", "arcface-w600k-r50", "fid-inception", "lpips-alexnet",
                 "hyperiqa-koniq", "vgg16", "mediapipe-face-mesh"):
        assert need in names
    for s in registered_weights():
        assert s.source and s.licence and s.used_by and s.filename


def test_missing_file_error_names_file_directory_and_source(tmp_path):
    reg = WeightsRegistry(tmp_path)
    with pytest.raises(MissingWeightsError) as e:
        reg.path("syncnet_v2")
    msg = str(e.value)
    assert str(tmp_path / "syncnet_v2.model") in msg and "PT_WEIGHTS_DIR" in msg and "syncnet_python" in msg
    with pytest.raises(KeyError, match="registered"):
        reg.path("no-such-net")


def test_present_file_and_checksum(tmp_path):
    blob = b"weights" * 100
    digest = hashlib.sha256(blob).hexdigest()
    (tmp_path / "net.bin").write_bytes(blob)
    good = WeightSpec("net", "net.bin", "somewhere", "MIT", "tests", sha256=digest[:8])
    bad = WeightSpec("bad", "net.bin", "somewhere", "MIT", "tests", sha256="00000000")
    reg = WeightsRegistry(tmp_path, specs=[good, bad])
    assert reg.path("net", verify=True) == tmp_path / "net.bin"
    with pytest.raises(WeightsChecksumError, match="does not match"):
        reg.path("bad", verify=True)
    st = {s.spec.name: s for s in reg.status(verify=True)}
    assert st["net"].present and st["net"].checksum_ok and st["bad"].checksum_ok is False


def test_folder_entries_need_content(tmp_path):
    spec = WeightSpec("hub", "hub", "hf", "Apache-2.0", "tests", is_dir=True)
    reg = WeightsRegistry(tmp_path, specs=[spec])
    (tmp_path / "hub").mkdir()
    with pytest.raises(MissingWeightsError, match="folder"):
        reg.path("hub")
    (tmp_path / "hub" / "config.json").write_text("{}")
    assert reg.path("hub") == tmp_path / "hub"


def test_weights_dir_from_environment(tmp_path):
    assert default_weights_dir({"PT_WEIGHTS_DIR": str(tmp_path)}) == tmp_path
    assert default_weights_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "personatalk" / "weights"


def test_bundled_weights_are_present():
    reg = WeightsRegistry("/nonexistent")
    st = {s.spec.name: s for s in reg.status()}
    assert st["mediapipe-face-mesh"].present and st["lpips-heads"].present
    assert reg.path("mediapipe-face-mesh").is_dir()
