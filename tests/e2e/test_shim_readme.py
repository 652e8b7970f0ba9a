"""The README's shim examples (curl, the UDP client, the openai snippet and
``generate --via shim``), run as written against ``hydramesh up --backend null``.

Where an unprivileged network namespace is available (``unshare -rn``), the
cluster runs inside a fresh one on exactly the ports the README uses, and the
examples run byte for byte. Elsewhere (or with ``HYDRAMESH_TEST_NO_NETNS=1``)
the cluster gets free ports and only the port numbers in the examples are
swapped for them.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage

from hydramesh.client.local_cluster import free_port

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.DOTALL)


def shim_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split("\n## The shim\n", 1)[1].split("\n## ", 1)[0].split("### Why it is built this way", 1)[0]
    return [(lang, code) for lang, code in BLOCK.findall(section) if "127.0.0.1" in code]


def namespace_works() -> bool:
    if os.environ.get("HYDRAMESH_TEST_NO_NETNS") or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


def driver(examples, work: Path, ports: dict[str, int] | None) -> str:
    """A bash script: start the cluster, run each example into exN.out, stop."""
    up = [str(Path(sys.executable).with_name("hydramesh")), "up", "--backend", "null", "--workers", "1", "--log-format", "json"]
    lines = ["set -u", "cd " + shlex.quote(str(work))]
    if ports is None:
        lines.append("ip link set lo up")
    else:
        up += ["--port", str(ports["7777"]), "--http-port", str(ports["7780"]),
               "--shim-port", str(ports["9999"]), "--shim-http-port", str(ports["8080"])]
        lines.append(f"export HYDRAMESH_TARGET=127.0.0.1:{ports['9999']}")
    lines += [
        shlex.join(up) + " > up.log 2>&1 &",
        "UP=$!",
        "for i in $(seq 1 600); do grep -q '^cluster ready' up.log && break; sleep 0.1; done",
    ]
    for n, (lang, code) in enumerate(examples):
        if ports is not None:
            for documented, actual in ports.items():
                code = re.sub(rf"\b{documented}\b", str(actual), code)
        suffix = "py" if lang == "python" else "sh"
        (work / f"ex{n}.{suffix}").write_text(code)
        runner = shlex.quote(sys.executable) if lang == "python" else "bash -eo pipefail"
        lines.append(f"{runner} ex{n}.{suffix} > ex{n}.out 2>&1; echo $? > ex{n}.rc")
    lines += ["kill -INT $UP", "wait $UP", "echo $? > up.rc"]
    return "\n".join(lines) + "\n"


def png_size(path: Path) -> tuple[int, int]:
    picture = PILImage.open(io.BytesIO(path.read_bytes()))
    assert picture.format == "PNG"
    return picture.size


def test_readme_shim_examples_work_as_written(tmp_path):
    examples = shim_examples()
    kinds = [("curl" in code, "socket" in code, "openai" in code, "--via shim" in code) for _, code in examples]
    assert len(examples) == 5 and sum(k[0] for k in kinds) == 2 and all(any(k) for k in kinds)
    isolated = namespace_works()
    ports = None if isolated else {p: free_port(kind) for p, kind in (("7777", 2), ("7780", 1), ("9999", 2), ("8080", 1))}
    script = tmp_path / "driver.sh"
    script.write_text(driver(examples, tmp_path, ports))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRAMESH_API_KEY", None)
    argv = ["unshare", "-rn", "bash", str(script)] if isolated else ["bash", str(script)]
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("the README examples did not finish within 240 s:\n" + (tmp_path / "up.log").read_text()[-3000:])

    def result(n: int) -> tuple[int, str]:
        return int((tmp_path / f"ex{n}.rc").read_text()), (tmp_path / f"ex{n}.out").read_text()

    logs = (tmp_path / "up.log").read_text()
    for n in range(len(examples)):
        rc, out = result(n)
        assert rc == 0, f"README example {n} failed ({'isolated' if isolated else 'ports swapped'}):\n{examples[n][1]}\n---\n{out}\n---\n{logs[-3000:]}"
    order = [next(i for i, (_, code) in enumerate(examples) if needle in code) for needle in ("socket", "--via shim", "n\": 2", "/v1/models", "openai")]
    udp, via_shim, curl_images, curl_misc, sdk = order
    assert result(curl_images)[1] == result(sdk)[1] == ""  # they only write files
    assert re.fullmatch(r"fox\.png: \d+ bytes, seed 7\n", result(udp)[1])
    assert "wrote fox.png (64x64 image/png" in result(via_shim)[1]
    assert png_size(tmp_path / "fox.png") == (64, 64)
    out = result(curl_misc)[1]
    assert '{"object":"list","data":[{"id":"null","object":"model","created":0,"owned_by":"hydramesh"}]}' in out
    expected_error = re.search(r"^# (\{\"error\".*\})$", examples[curl_misc][1], re.MULTILINE)[1]
    assert expected_error in out  # the README shows the exact answer
    assert '"status":"ok"' in out
    assert "hydramesh_shim_images_total 2" in out  # the two from the first curl example
    # The openai snippet ran last and rewrote the curl example's two files.
    assert png_size(tmp_path / "fox-0.png") == png_size(tmp_path / "fox-1.png") == (64, 64)
    assert (tmp_path / "fox-0.png").read_bytes() != (tmp_path / "fox-1.png").read_bytes()
    assert int((tmp_path / "up.rc").read_text()) == 0
