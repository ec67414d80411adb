"""`think2seg batch --ray ADDRESS` on a real multi-node Ray cluster on loopback (a head and two worker nodes,
`ray.cluster_utils.Cluster`, every node at 127.0.0.1): a worker node lost mid-batch, the driver killed mid-run
and resumed, and a cluster that requires Ray's token. Each run must end with every tile answered once and the
features a local run writes. The driver is the CLI, in its own process, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import tiny_model_args
from test_cluster import rows
from think2seg.batch import BatchJob, run_batch
from think2seg.testing.scenes import make_geotiff
from think2seg.tiling import Tiling

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

QUERY = "the water bodies"
TILING = ["--tile-size", "256", "--overlap", "32", "--batch-size", "1", "--max-reasoning-tokens", "64"]
TILES = 12  # 900 x 700 px in 256 px tiles overlapping by 32: 4 x 3


def node_env(**extra: str) -> dict:
    return {
        **os.environ,
        "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "RAY_NODE_IP_ADDRESS": "127.0.0.1",
        **extra,
    }


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    return make_geotiff(folder / "scene.tif", 900, 700, discs=[(200, 200, 90), (650, 450, 120)])


@pytest.fixture(scope="module")
def local_rows(raster, tiny_pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.gpkg"
    job = BatchJob(
        rasters=[str(raster)],
        queries=[QUERY],
        output=str(out),
        options={"max_reasoning_tokens": 64},
        tiling=Tiling(256, 32, batch_size=1),
        progress=False,
    )
    assert run_batch(lambda: tiny_pipeline, job).done == 1
    got = {layer: rows(out, layer) for layer in ("mask", "prompt_points", "prompt_boxes")}
    assert len({r[1] for r in got["prompt_boxes"]}) == TILES  # the raster is as many tiles as the test says
    return got


class LoopbackCluster:
    """A head (one CPU) and two worker nodes (one CPU each) of a real Ray cluster, all on 127.0.0.1."""

    def __init__(self, **env: str):
        from ray.cluster_utils import Cluster

        self._saved = {k: os.environ.get(k) for k in [*env, "RAY_NODE_IP_ADDRESS"]}
        os.environ.update({"RAY_NODE_IP_ADDRESS": "127.0.0.1", **env})
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
        )
        self.workers = [self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address
        assert self.address.startswith("127.0.0.1:")

    def node_running_an_actor(self):
        """A worker node (not the head) that holds one of the batch's model actors."""
        import psutil

        for node in self.workers:
            raylet = node.all_processes["raylet"][0].process
            for child in psutil.Process(raylet.pid).children(recursive=True):
                try:
                    if "TileActor" in " ".join(child.cmdline()):
                        return node
                except psutil.Error:
                    continue
        return None

    def close(self):
        self.cluster.shutdown()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_driver(address: str, raster: Path, out: Path, models: Path, *extra: str, env: dict | None = None):
    cmd = [
        sys.executable,
        "-m",
        "think2seg",
        "batch",
        "-q",
        QUERY,
        str(raster),
        "-o",
        str(out),
        *TILING,
        "--no-progress",
        "--ray",
        address,
        "--ray-actors",
        "2",
        "--keep-state",
        *tiny_model_args(models),
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or node_env())


def shards(out: Path) -> int:
    return len(list(Path(str(out) + ".state").glob("**/tiles/*.json")))


def wait_for(cond, timeout: float, what: str, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver ended (rc {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def finish(proc, timeout: float = 600) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the driver did not finish in {timeout} s:\n{out}")
    return out


def assert_same_as_local(out: Path, local_rows: dict):
    got = {layer: rows(out, layer) for layer in ("mask", "prompt_points", "prompt_boxes")}
    tiles = [r[1] for r in got["prompt_boxes"]]
    assert sorted(tiles) == sorted(set(tiles)) and len(tiles) == TILES, "every tile exactly once"
    for layer, want in local_rows.items():
        assert got[layer] == want, f"layer {layer} differs from the local run"
    assert got["mask"], "the comparison covers mask features too"


def test_a_worker_node_lost_mid_batch(raster, local_rows, tiny_models_dir, tmp_path):
    c = LoopbackCluster()
    try:
        out = tmp_path / "lost.gpkg"
        proc = start_driver(c.address, raster, out, tiny_models_dir)
        wait_for(lambda: shards(out) >= 2, 300, "two tiles were answered", proc)
        node = wait_for(c.node_running_an_actor, 30, "an actor on a worker node", proc)
        c.cluster.remove_node(node, allow_graceful=False)  # the node's processes killed, as a lost machine
        printed = finish(proc)
        assert proc.returncode == 0, printed
        assert shards(out) == TILES, printed
        assert "1 done, 0 failed, 1 in all" in printed, printed
        assert_same_as_local(out, local_rows)
    finally:
        c.close()


def test_the_driver_killed_and_resumed_finishes_the_rest_once(raster, local_rows, tiny_models_dir, tmp_path):
    c = LoopbackCluster()
    try:
        out = tmp_path / "resumed.gpkg"
        proc = start_driver(c.address, raster, out, tiny_models_dir)
        wait_for(lambda: shards(out) >= 3, 300, "three tiles were answered", proc)
        proc.kill()
        proc.wait()
        before = shards(out)
        assert 3 <= before < TILES, "killed mid-run"
        proc = start_driver(c.address, raster, out, tiny_models_dir, "--resume")
        printed = finish(proc)
        assert proc.returncode == 0, printed
        assert f"tiles     {TILES} ({TILES - before} run now" in printed, printed
        assert_same_as_local(out, local_rows)
    finally:
        c.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cluster_that_requires_a_token(tiny_models_dir, tmp_path):
    """`ray start --head` as a user runs it, with Ray's token auth (Ray reads the mode when it starts, so the
    head is its own process, not this test's `Cluster`)."""
    token = tmp_path / "ray_token"
    token.write_text("t" * 32 + "\n")
    token.chmod(0o600)
    auth = node_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    temp = tempfile.mkdtemp(prefix="t2s-ray-")  # this head's sessions apart; short (Ray's sockets: 107 bytes)
    up = subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env=auth,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        small = make_geotiff(tmp_path / "small.tif", 400, 200, discs=[(100, 100, 60)])  # 2 tiles: auth is the point
        out = tmp_path / "token.gpkg"
        refused = start_driver(f"127.0.0.1:{port}", small, tmp_path / "refused.gpkg", tiny_models_dir)
        said = finish(refused, timeout=240)
        assert refused.returncode != 0 and "token" in said.lower(), said  # no token: refused, and it says why
        printed = finish(start_driver(f"127.0.0.1:{port}", small, out, tiny_models_dir, env=auth))
        assert "1 done, 0 failed" in printed, printed
        assert len({r[1] for r in rows(out, "prompt_boxes")}) == 2, printed
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=auth, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
