"""A session that started its own Ray leaves nothing behind: no Ray process, party, port or temp dir."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, os, time
    import numpy as np, psutil, ray
    from raympc import Session

    assert not ray.is_initialized()
    with Session() as s:
        node = ray._private.worker._global_node
        ray_pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
        party_pids = [i["pid"] for i in s.party_info]
        ports = [int(i["address"].rsplit(":", 1)[1]) for i in s.party_info]
        temp_dir, workdir = s._ray.temp_dir, s.workdir
        out = s.run(lambda a: a + 1.0, np.zeros(3, np.float32)).outputs
    alive = lambda p: psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in ray_pids + party_pids):
        time.sleep(0.2)
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
    print(json.dumps({
        "ray_initialized": ray.is_initialized(), "ray_pids": len(ray_pids),
        "survivors": [p for p in ray_pids + party_pids if alive(p)],
        "ports_still_listening": sorted(set(ports) & listening),
        "temp_dir_exists": os.path.exists(temp_dir), "workdir_exists": os.path.exists(workdir),
        "out": out.tolist(),
    }))
""")


def test_owned_embedded_ray_is_fully_cleaned_up():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["out"] == [1.0, 1.0, 1.0]
    assert report["ray_pids"] >= 2  # gcs and raylet at least were started by this session
    assert report["survivors"] == []
    assert report["ports_still_listening"] == []
    assert not report["ray_initialized"]
    assert not report["temp_dir_exists"] and not report["workdir_exists"]
