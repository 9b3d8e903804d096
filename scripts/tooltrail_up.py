"""Starting `tooltrail up` for the bench scripts: on a free local port, quiet, and waited for."""
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_up(binary, data_dir, config=None, timeout=30):
    """`tooltrail up` on a free port, answering /healthz: (the process, its base URL).
    Exits the script, stopping the process, if it does not answer within `timeout` seconds."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [binary] + (["--config", str(config)] if config else [])
    command += ["up", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
    up = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=dict(os.environ, TOOLTRAIL__LOG__FILTER="warn"))
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            return up, base
        except OSError:
            if time.time() > deadline or up.poll() is not None:
                up.terminate()
                up.wait()
                sys.exit("tooltrail up did not start")
            time.sleep(0.1)
