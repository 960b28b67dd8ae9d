"""Where Spark's log goes when the ``framelake`` command starts its JVM (``framelake.spark_log``)."""
from __future__ import annotations

import os
import subprocess
import sys

from framelake.spark_log import DRIVER_OPTIONS_KEY, LOG4J2_PROPERTIES, SparkLog
from tests.support.paths import REPO


def test_a_local_lake_keeps_the_log_of_each_run_an_s3_lake_a_local_folder(tmp_path):
    assert SparkLog.for_run(str(tmp_path / "lake"), "r1").file == str(tmp_path / "lake" / "logs" / "r1" / "spark.log")
    on_s3 = SparkLog.for_run("s3://bucket/lake", "r1")
    assert not on_s3.file.startswith("s3://") and on_s3.file.endswith(os.path.join("framelake-logs", "r1", "spark.log"))
    assert SparkLog.for_run("s3://bucket/lake", "r1", console=True).where == "stderr (--debug)"


def test_the_driver_gets_the_log4j_settings_after_its_other_options(tmp_path):
    log = SparkLog(str(tmp_path / "logs"))
    conf = log.driver_options({DRIVER_OPTIONS_KEY: "-XX:TieredStopAtLevel=1", "spark.master": "local[2]"})
    settings = tmp_path / "logs" / "log4j2.properties"
    assert conf == {DRIVER_OPTIONS_KEY: f"-XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=file:{settings}",
                    "spark.master": "local[2]"}
    assert settings.read_text() == LOG4J2_PROPERTIES
    assert log.driver_options({})[DRIVER_OPTIONS_KEY] == f"-Dlog4j2.configurationFile=file:{settings}"


def test_processes_started_in_the_block_write_their_stderr_to_the_log(tmp_path, capfd):
    log = SparkLog(str(tmp_path / "logs"))
    speak = [sys.executable, "-c", "import sys; sys.stderr.write('from the jvm\\n')"]
    with log.jvm_stderr():
        subprocess.run(speak, check=True)
    print("ours", file=sys.stderr)
    subprocess.run(speak, check=True)
    assert open(log.file).read() == "from the jvm\n"
    assert capfd.readouterr().err == "ours\nfrom the jvm\n"


def test_debug_keeps_the_console(tmp_path, capfd):
    log = SparkLog(str(tmp_path / "logs"), console=True)
    with log.jvm_stderr():
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('shown\\n')"], check=True)
    assert capfd.readouterr().err == "shown\n"
    assert not os.path.exists(log.file)


def test_conf_log4j2_properties_is_the_text_framelake_writes():
    """conf/log4j2.properties is what the README gives to spark-submit --driver-java-options."""
    assert (REPO / "conf" / "log4j2.properties").read_text() == LOG4J2_PROPERTIES
