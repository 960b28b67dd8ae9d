"""What every stage runs with: the session framelake makes and its Python workers' heap."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from framelake.runtime import python_socket_conf
from tests.support.paths import REPO

# Run in a fresh interpreter: freezing is for the life of a process, and pytest's heap is not
# a worker's.
FREEZE_CHECK = """
import gc
import pyarrow
import jobs.frames
from jobs.stage import freeze_worker_heap

gc.collect()
alive = len(gc.get_objects())
freeze_worker_heap()
frozen = gc.get_freeze_count()
cycle = []
cycle.append(cycle)  # garbage a later task makes: a reference cycle
del cycle
print(alive, frozen, len(gc.get_objects()), gc.collect())
"""


def test_freeze_worker_heap_leaves_only_later_objects_to_the_collector():
    out = subprocess.run([sys.executable, "-c", FREEZE_CHECK], cwd=REPO, capture_output=True, text=True, check=True)
    alive, frozen, tracked_after, collected = map(int, out.stdout.split())
    assert alive > 10_000  # pyarrow and the frames job: what a worker's collections walked each task
    assert frozen >= alive
    assert tracked_after < 100  # what a collection walks now
    assert collected >= 1  # the later cycle is still collected


SOCKET_FOLDER_CHECK = """
import os, sys
from framelake.runtime import python_socket_conf

conf = python_socket_conf("local[2]", sys.argv[1])
folder = conf["spark.python.unix.domain.socket.dir"]
open(os.path.join(folder, ".left-behind.sock"), "w").close()  # what Spark leaves unless stopped
print(conf["spark.python.unix.domain.socket.enabled"], folder)
"""


def test_local_sessions_put_python_sockets_in_a_folder_removed_at_exit_or_by_the_next_run():
    short = tempfile.mkdtemp(prefix="fl", dir="/tmp")  # pytest's tmp_path is too long for sockets
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                            text=True, check=True).stdout.strip()
    left_by_killed_run = os.path.join(short, f"framelake-sock-{killed}-abcdefgh")
    in_use = os.path.join(short, f"framelake-sock-{os.getpid()}-abcdefgh")
    for folder in (left_by_killed_run, in_use):
        os.mkdir(folder)
        open(os.path.join(folder, ".socket.sock"), "w").close()
    try:
        out = subprocess.run([sys.executable, "-c", SOCKET_FOLDER_CHECK, short], cwd=REPO, capture_output=True,
                             text=True, check=True)
        enabled, folder = out.stdout.split()
        assert enabled == "true" and os.path.dirname(folder) == short
        assert os.listdir(short) == [os.path.basename(in_use)]
    finally:
        shutil.rmtree(short)


def test_python_sockets_stay_on_tcp_where_a_socket_path_is_too_long_or_on_a_cluster(tmp_path):
    socket_in_folder = f"/framelake-sock-{os.getpid()}-XXXXXXXX/.{'x' * 36}.sock"
    longest_folder = 107 - len(socket_in_folder)  # Linux binds paths of up to 107 bytes
    fits, too_long = tmp_path / "a", tmp_path / "b"
    for folder, length in ((fits, longest_folder), (too_long, longest_folder + 1)):
        folder.mkdir()
        link = "/tmp/" + folder.name * (length - 5)
        os.symlink(folder, link)
        try:
            conf = python_socket_conf("local[*]", link)
            assert (conf != {}) == (folder == fits)
            assert len(os.listdir(folder)) == (1 if folder == fits else 0)
        finally:
            os.unlink(link)
    assert python_socket_conf("spark://127.0.0.1:7077", "/tmp") == {}  # the nodes' folders are theirs


def test_the_shared_session_was_made_by_framelake(spark):
    assert spark.conf.get("spark.python.unix.domain.socket.enabled", None) == (
        "true" if python_socket_conf("local[2]", tempfile.gettempdir()) else None)
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    jvm_options = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    assert "-XX:TieredStopAtLevel=1" in list(jvm_options)  # a local JVM compiles with C1 only
